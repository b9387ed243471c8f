package cuda

import (
	"github.com/densessm/densessm/api"
)

// Unwritten lists the ops that have no CUDA kernel yet: they run on the
// host through the CPU backend when the host fallback is on
// (Options.HostFallback, the default), and otherwise panic with an error
// wrapping api.ErrUnsupported that names them. Ops that have a kernel for
// some arguments only (a Binary, Permute or SumTo of more than 8
// dimensions after merging, a selective scan or its gradient of more than 256
// states) fall back for those arguments.
var Unwritten = []string{
	"Binary (more than 8 broadcast dimensions)", "Permute (more than 8 dimensions)", "SumTo (more than 8 dimensions)",
	"SelectiveScan (N > 256)", "SelectiveScanGrad (N > 256)",
}

// hostCall is one op run through the host fallback: its tensors copied to
// CPU tensors (in), and the outputs copied back when it returns (out).
type hostCall struct {
	b    *Backend
	outs [][2]api.Tensor // device tensor, host tensor
}

// in returns a host copy of the device tensor t (nil for nil).
func (h *hostCall) in(t api.Tensor) api.Tensor {
	if t == nil {
		return nil
	}
	d := h.b.own(t)
	c := h.b.host.Alloc(d.dtype, d.shape...)
	if n := d.nbytes(); n > 0 {
		raw := make([]byte, n)
		h.b.download(raw, d.ptr())
		h.b.host.Upload(c, raw)
	}
	return c
}

// out returns a host copy of the output t (its old contents too: some ops
// read them, as MatMul with beta or SetSlice), uploaded back after the op.
func (h *hostCall) out(t api.Tensor) api.Tensor {
	if t == nil {
		return nil
	}
	c := h.in(t)
	h.outs = append(h.outs, [2]api.Tensor{t, c})
	return c
}

// onHost runs fn, an op written against the CPU backend with its
// tensors from h.in and h.out, or panics with api.ErrUnsupported when the
// fallback is off.
func (b *Backend) onHost(op string, fn func(c api.Backend, h *hostCall)) {
	if !b.fallback {
		api.Panicf(api.ErrUnsupported, "cuda: %s has no CUDA kernel yet (docs/cuda.md; %s=1 runs it on the host)", op, FallbackEnv)
	}
	b.opsMu.Lock()
	b.hostOps[op]++
	b.opsMu.Unlock()
	h := &hostCall{b: b}
	fn(b.host, h)
	for _, o := range h.outs {
		d := b.own(o[0])
		if n := d.nbytes(); n > 0 {
			raw := make([]byte, n)
			b.host.Download(raw, o[1])
			b.upload(d.ptr(), raw)
		}
		b.host.Free(o[1])
	}
}
