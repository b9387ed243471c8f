package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/densessm/densessm/api"
)

func sample() api.HostTensor {
	data := make([]byte, 4*2*3*5)
	for i := range data {
		data[i] = byte(i * 7)
	}
	return api.HostTensor{Name: "x", DType: api.F32, Shape: api.Shape{2, 3, 5}, Data: data}
}

func sameHost(t *testing.T, got, want api.HostTensor) {
	t.Helper()
	if got.Name != want.Name || got.DType != want.DType || !got.Shape.Equal(want.Shape) || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("got %s %s %v (%d bytes), want %s %s %v", got.Name, got.DType, got.Shape, len(got.Data), want.Name, want.DType, want.Shape)
	}
}

func TestTensorRoundTrip(t *testing.T) {
	h := sample()
	enc, err := EncodeTensor(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeTensor(enc)
	if err != nil {
		t.Fatal(err)
	}
	sameHost(t, got, h)
	bf := api.HostTensor{Name: "w", DType: api.BF16, Shape: api.Shape{3}, Data: []byte{1, 2, 3, 4, 5, 6}}
	enc, err = EncodeTensor(bf)
	if err != nil {
		t.Fatal(err)
	}
	if got, err = DecodeTensor(enc); err != nil {
		t.Fatal(err)
	}
	sameHost(t, got, bf)
}

// TestStreamRoundTrip cuts the stream into chunks of every size from 1
// byte and reads it back.
func TestStreamRoundTrip(t *testing.T) {
	h := sample()
	var whole []byte
	if err := WriteTensorStream(h, func(b []byte) error { whole = append(whole, b...); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 3, 64, 1000, len(whole)} {
		rest := whole
		got, err := ReadTensorStream(func() ([]byte, error) {
			if len(rest) == 0 {
				return nil, io.EOF
			}
			n := min(size, len(rest))
			c := rest[:n]
			rest = rest[n:]
			return c, nil
		}, int64(len(whole)))
		if err != nil {
			t.Fatalf("chunks of %d: %v", size, err)
		}
		sameHost(t, got, h)
		if _, ok := Float32s(got.Data); !ok {
			t.Errorf("chunks of %d: decoded data not aligned for float32", size)
		}
	}
	// A transport error is returned as it is, not as a corrupt stream.
	broken := errors.New("plugin died")
	calls := 0
	_, err := ReadTensorStream(func() ([]byte, error) {
		if calls++; calls > 1 {
			return nil, broken
		}
		return whole[:10], nil
	}, int64(len(whole)))
	if !errors.Is(err, broken) || errors.Is(err, api.ErrCorrupt) {
		t.Errorf("transport error: %v", err)
	}
}

func TestIDs(t *testing.T) {
	ids := [][]int32{{1, -100, 3}, {4, 5, 1 << 30}}
	enc, err := EncodeIDs(ids)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeIDs(enc)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("%v, %v", got, err)
	}
	if _, err := EncodeIDs([][]int32{{1}, {2, 3}}); !errors.Is(err, api.ErrShape) {
		t.Errorf("ragged: %v", err)
	}
	f32, _ := EncodeTensor(sample())
	if _, err := DecodeIDs(f32); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("floats as ids: %v", err)
	}
}

func TestCorrupt(t *testing.T) {
	enc, _ := EncodeTensor(sample())
	for _, b := range [][]byte{nil, []byte("ARROW1"), enc[:len(enc)/2], append([]byte{0}, enc...)} {
		if _, err := DecodeTensor(b); !errors.Is(err, api.ErrCorrupt) {
			t.Errorf("%d bytes: %v, want corrupt", len(b), err)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	for _, want := range []error{api.ErrConfig, api.ErrNotFound, api.ErrNotFinite, api.ErrOutOfMemory, context.Canceled} {
		err := fmt.Errorf("wrapped: %w", want)
		if got := KindError(ErrorKind(err)); got != want {
			t.Errorf("%v: kind %q gives %v", want, ErrorKind(err), got)
		}
	}
	if ErrorKind(errors.New("plain")) != "" || KindError("nonsense") != nil {
		t.Error("an error of no kind")
	}
}

// FuzzDecodeTensor: no input panics or allocates beyond what it holds;
// what decodes is consistent.
func FuzzDecodeTensor(f *testing.F) {
	enc, _ := EncodeTensor(sample())
	f.Add(enc)
	ids, _ := EncodeIDs([][]int32{{1, 2}})
	f.Add(ids)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeTensor(b)
		if err != nil {
			if !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrShape) && !errors.Is(err, api.ErrUnsupported) && !errors.Is(err, api.ErrDType) {
				t.Fatalf("error of no kind: %v", err)
			}
			return
		}
		if len(h.Data) != h.Shape.NumElements()*h.DType.Size() {
			t.Fatalf("%v %s with %d bytes", h.Shape, h.DType, len(h.Data))
		}
	})
}

// FuzzReadTensorStream is FuzzDecodeTensor for the streamed form.
func FuzzReadTensorStream(f *testing.F) {
	var whole []byte
	WriteTensorStream(sample(), func(b []byte) error { whole = append(whole, b...); return nil })
	f.Add(whole)
	f.Fuzz(func(t *testing.T, b []byte) {
		done := false
		h, err := ReadTensorStream(func() ([]byte, error) {
			if done {
				return nil, io.EOF
			}
			done = true
			return b, nil
		}, int64(len(b)))
		if err == nil && len(h.Data) != h.Shape.NumElements()*h.DType.Size() {
			t.Fatalf("%v %s with %d bytes", h.Shape, h.DType, len(h.Data))
		}
	})
}
