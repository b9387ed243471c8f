package generate

import (
	"fmt"

	"github.com/densessm/densessm/api"
)

// hostTensor is implemented by tensors in host memory (the CPU backend's):
// their values can be read without a copy.
type hostTensor api.HostFloat32s

// logitRows reads the logits the sampler needs out of the model's tensors,
// reusing its buffers from one call to the next.
type logitRows struct {
	raw []byte    // a download of a tensor not in host memory
	all []float32 // its values
	buf []float32 // a prefill's last logits, copied, [B*V]
}

// values returns the F32 values of t, of shape want: the tensor's own
// storage when it is in host memory (valid until the model overwrites it),
// a copy in reused buffers otherwise.
func (r *logitRows) values(t api.Tensor, want ...int) ([]float32, error) {
	if t.DType() != api.F32 || !t.Shape().Equal(api.Shape(want)) {
		return nil, fmt.Errorf("logits of dtype %s and shape %v: want F32 %v: %w", t.DType(), t.Shape(), want, api.ErrShape)
	}
	if h, ok := t.(hostTensor); ok {
		return h.HostFloat32s(), nil
	}
	n := t.Shape().NumElements()
	r.raw = grow(r.raw, 4*n)
	r.all = grow(r.all, n)
	t.Backend().Download(r.raw, t)
	if err := api.DecodeFloat32(r.all, api.F32, r.raw); err != nil {
		return nil, err
	}
	return r.all, nil
}

// step returns the logits [B*V] of a Step.
func (r *logitRows) step(t api.Tensor, B, V int) ([]float32, error) {
	return r.values(t, B, V)
}

// copied returns a copy of the logits [B*V] of t [B,V], in reused
// buffers: t may be freed afterwards.
func (r *logitRows) copied(t api.Tensor, B, V int) ([]float32, error) {
	all, err := r.values(t, B, V)
	if err != nil {
		return nil, err
	}
	r.buf = grow(r.buf, B*V)
	copy(r.buf, all)
	return r.buf, nil
}

// grow returns s resized to n elements, reusing its storage when it can.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
