package wire

import (
	"bytes"
	"fmt"
	"io"

	"github.com/densessm/densessm/api"
	pb "github.com/densessm/densessm/plugins/proto"
)

// WritePieces sends tensors of any number and size as TensorPieces: each
// tensor's Arrow IPC stream (as EncodeTensor writes it) cut into pieces,
// its last piece marked, and the pieces gathered into messages of at most
// ChunkSize bytes of data, so that small tensors share a message and a
// large one spans several. send is called once per message, at least once
// (with no pieces when ts is empty); the pieces are its to keep.
func WritePieces(ts []api.HostTensor, send func([]*pb.TensorPiece) error) error {
	var msg []*pb.TensorPiece
	size, sent := 0, false
	flush := func() error {
		m := msg
		msg, size, sent = nil, 0, true
		return send(m)
	}
	for _, h := range ts {
		var cur *pb.TensorPiece // this tensor's piece in msg
		err := WriteTensorStream(h, func(b []byte) error {
			if size > 0 && size+len(b) > ChunkSize {
				if err := flush(); err != nil {
					return err
				}
				cur = nil
			}
			if cur == nil {
				cur = &pb.TensorPiece{Data: make([]byte, 0, min(len(h.Data)+1024, ChunkSize))}
				msg = append(msg, cur)
			}
			cur.Data = append(cur.Data, b...) // b may be the writer's buffer: copied
			size += len(b)
			return nil
		})
		if err != nil {
			return err
		}
		if cur == nil { // (a writer that wrote nothing)
			cur = &pb.TensorPiece{}
			msg = append(msg, cur)
		}
		cur.Last = true
	}
	if len(msg) > 0 || !sent {
		return flush()
	}
	return nil
}

// PieceReader puts together the tensors WritePieces sent, checking each
// as DecodeTensor does. A tensor is decoded when its last piece arrives,
// bounded by the bytes that arrived: nothing is allocated on a size a
// message claims.
type PieceReader struct {
	want int              // the tensors the stream says it carries
	cur  [][]byte         // the pieces of the tensor being read
	size int64            // their bytes
	out  []api.HostTensor // the tensors read
}

// NewPieceReader reads a stream that says it carries n tensors.
func NewPieceReader(n int64) (*PieceReader, error) {
	if n < 0 {
		return nil, fmt.Errorf("a stream of %d tensors: %w", n, api.ErrCorrupt)
	}
	return &PieceReader{want: int(n)}, nil
}

// Add takes the pieces of one message.
func (r *PieceReader) Add(ps []*pb.TensorPiece) error {
	for _, p := range ps {
		if len(r.out) == r.want {
			return fmt.Errorf("more than the %d tensors the stream said it carries: %w", r.want, api.ErrCorrupt)
		}
		if len(p.Data) > 0 {
			r.cur = append(r.cur, p.Data)
			r.size += int64(len(p.Data))
		}
		if !p.Last {
			continue
		}
		var h api.HostTensor
		var err error
		if len(r.cur) == 1 {
			h, err = DecodeTensor(r.cur[0])
		} else {
			rs := make([]io.Reader, len(r.cur))
			for i, c := range r.cur {
				rs[i] = bytes.NewReader(c)
			}
			h, err = readTensor(io.MultiReader(rs...), r.size)
		}
		if err != nil {
			return fmt.Errorf("tensor %d of %d: %w", len(r.out), r.want, err)
		}
		r.out = append(r.out, h)
		r.cur, r.size = nil, 0
	}
	return nil
}

// Tensors returns the tensors read, once every one the stream said it
// carries has arrived whole.
func (r *PieceReader) Tensors() ([]api.HostTensor, error) {
	if len(r.out) != r.want || len(r.cur) > 0 {
		return nil, fmt.Errorf("a stream of %d tensors ended after %d (and %d bytes of the next): %w", r.want, len(r.out), r.size, api.ErrCorrupt)
	}
	return r.out, nil
}
