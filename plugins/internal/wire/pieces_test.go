package wire

import (
	"errors"
	"fmt"
	"testing"

	"github.com/densessm/densessm/api"
	pb "github.com/densessm/densessm/plugins/proto"
)

// pieceTensors are tensors of sizes from empty to over two ChunkSizes.
func pieceTensors() []api.HostTensor {
	var ts []api.HostTensor
	for i, n := range []int{0, 1, 1000, ChunkSize/4 - 7, ChunkSize / 4, 3 * ChunkSize / 8, 1, ChunkSize/2 + 3, 5} {
		data := make([]byte, 4*n)
		for j := range data {
			data[j] = byte(j*31 + i)
		}
		ts = append(ts, api.HostTensor{Name: fmt.Sprintf("layers.%d.x", i), DType: api.F32, Shape: api.Shape{n}, Data: data})
	}
	return ts
}

// TestPiecesRoundTrip: tensors of any size sent as pieces come back
// whole, in order, in messages of at most ChunkSize bytes, small ones
// sharing a message.
func TestPiecesRoundTrip(t *testing.T) {
	for _, ts := range [][]api.HostTensor{nil, pieceTensors()[:3], pieceTensors()} {
		var msgs [][]*pb.TensorPiece
		if err := WritePieces(ts, func(ps []*pb.TensorPiece) error { msgs = append(msgs, ps); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			t.Fatalf("%d tensors: no message sent", len(ts))
		}
		if len(ts) > 0 && len(ts) < 4 && len(msgs) != 1 {
			t.Errorf("%d small tensors in %d messages, want one", len(ts), len(msgs))
		}
		r, err := NewPieceReader(int64(len(ts)))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			size := 0
			for _, p := range m {
				size += len(p.Data)
			}
			if size > ChunkSize {
				t.Errorf("a message of %d bytes of pieces", size)
			}
			if err := r.Add(m); err != nil {
				t.Fatal(err)
			}
		}
		got, err := r.Tensors()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ts) {
			t.Fatalf("%d tensors, want %d", len(got), len(ts))
		}
		for i := range ts {
			sameHost(t, got[i], ts[i])
		}
	}
}

// TestPiecesRefused: a stream that ends inside a tensor, carries fewer or
// more tensors than it said, or holds a corrupt piece is refused
// (api.ErrCorrupt).
func TestPiecesRefused(t *testing.T) {
	ts := pieceTensors()
	var pieces []*pb.TensorPiece
	if err := WritePieces(ts, func(ps []*pb.TensorPiece) error { pieces = append(pieces, ps...); return nil }); err != nil {
		t.Fatal(err)
	}
	read := func(n int, ps []*pb.TensorPiece) error {
		r, err := NewPieceReader(int64(n))
		if err != nil {
			return err
		}
		if err := r.Add(ps); err != nil {
			return err
		}
		_, err = r.Tensors()
		return err
	}
	if err := read(len(ts), pieces); err != nil {
		t.Fatal(err)
	}
	var cut []*pb.TensorPiece // up to the first piece of a tensor in several
	for i, p := range pieces {
		if !p.Last {
			cut = pieces[:i+1]
			break
		}
	}
	if cut == nil {
		t.Fatalf("no tensor in several pieces")
	}
	bad := []*pb.TensorPiece{{Data: []byte("not an arrow stream"), Last: true}}
	for what, err := range map[string]error{
		"ends inside a tensor": read(len(ts), cut),
		"fewer tensors":        read(len(ts)+1, pieces),
		"more tensors":         read(len(ts)-1, pieces),
		"a corrupt piece":      read(1, bad),
		"a negative count":     read(-1, nil),
	} {
		if !errors.Is(err, api.ErrCorrupt) {
			t.Errorf("%s: %v, want an error wrapping api.ErrCorrupt", what, err)
		}
	}
}
