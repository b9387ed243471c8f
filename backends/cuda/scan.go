package cuda

import (
	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// scanIn are the checked inputs of a selective scan (see api.ScanArgs); d,
// h0 and inj are nil when absent.
type scanIn struct {
	B, T, E, N                   int
	x, dt, a, bm, cm, d, h0, inj *Tensor
}

// scanInputs checks the shapes and dtypes of in.
func (b *Backend) scanInputs(op string, in api.ScanArgs) scanIn {
	x, dt := b.f32(in.X, op), b.f32(in.Delta, op)
	if len(x.shape) != 3 {
		api.Panicf(api.ErrShape, "cuda: %s: X %v, want [B,T,E]", op, x.shape)
	}
	s := scanIn{B: x.shape[0], T: x.shape[1], E: x.shape[2], x: x, dt: dt}
	s.a = b.f32(in.A, op)
	if len(s.a.shape) != 2 || s.a.shape[0] != s.E {
		api.Panicf(api.ErrShape, "cuda: %s: A %v, want [%d,N]", op, s.a.shape, s.E)
	}
	s.N = s.a.shape[1]
	wantShape(op, "Delta", dt, s.B, s.T, s.E)
	s.bm, s.cm = b.f32(in.Bm, op), b.f32(in.Cm, op)
	wantShape(op, "Bm", s.bm, s.B, s.T, s.N)
	wantShape(op, "Cm", s.cm, s.B, s.T, s.N)
	s.d, s.h0, s.inj = b.f32OrNil(in.D, op), b.f32OrNil(in.H0, op), b.f32OrNil(in.Inject, op)
	if s.d != nil {
		wantShape(op, "D", s.d, s.E)
	}
	if s.h0 != nil {
		wantShape(op, "H0", s.h0, s.B, s.E, s.N)
	}
	if s.inj != nil {
		wantShape(op, "Inject", s.inj, s.B, s.T, s.E, s.N)
	}
	return s
}

// outputs checks tensors of the shapes of the scan's outputs, named by
// names: y (or dy) [B,T,E], hT (or dhT) [B,E,N] and hs (or dhs)
// [B,T,E,N], the last two nil or not.
func (s *scanIn) outputs(b *Backend, op string, names [3]string, y, hT, hs api.Tensor) (yt, ht, hst *Tensor) {
	yt, ht, hst = b.f32(y, op), b.f32OrNil(hT, op), b.f32OrNil(hs, op)
	wantShape(op, names[0], yt, s.B, s.T, s.E)
	if ht != nil {
		wantShape(op, names[1], ht, s.B, s.E, s.N)
	}
	if hst != nil {
		wantShape(op, names[2], hst, s.B, s.T, s.E, s.N)
	}
	return yt, ht, hst
}

// hostScanArgs are in's host copies for a host fallback.
func hostScanArgs(h *hostCall, in api.ScanArgs) api.ScanArgs {
	return api.ScanArgs{
		X: h.in(in.X), Delta: h.in(in.Delta), A: h.in(in.A), Bm: h.in(in.Bm), Cm: h.in(in.Cm),
		D: h.in(in.D), H0: h.in(in.H0), Inject: h.in(in.Inject),
	}
}

// scanOnHost runs the selective scan on the host.
func (b *Backend) scanOnHost(op string, y, hT, hs api.Tensor, in api.ScanArgs) {
	b.onHost(op, func(c api.Backend, h *hostCall) {
		c.(api.ScanKernels).SelectiveScan(h.out(y), h.out(hT), h.out(hs), hostScanArgs(h, in))
	})
}

// SelectiveScan runs ds_selective_scan_f32 (N up to 256; more runs on the
// host).
func (b *Backend) SelectiveScan(y, hT, hs api.Tensor, in api.ScanArgs) {
	const op = "selective scan"
	s := b.scanInputs(op, in)
	B, T, E, N := s.B, s.T, s.E, s.N
	yt, ht, hst := s.outputs(b, op, [3]string{"y", "hT", "hs"}, y, hT, hs)
	if B == 0 || E == 0 || N == 0 {
		return // no states, no outputs with elements
	}
	g, tc, err := kernels.ScanGeometry(B, E, N)
	if err != nil {
		b.scanOnHost("SelectiveScan (N > 256)", y, hT, hs, in)
		return
	}
	b.launch("ds_selective_scan_f32", g, yt.ptr(), ptrOf(ht), ptrOf(hst), s.x.ptr(), s.dt.ptr(), s.a.ptr(), s.bm.ptr(), s.cm.ptr(),
		ptrOf(s.d), ptrOf(s.h0), ptrOf(s.inj), int32(T), int32(E), int32(N), int32(tc))
}

// SelectiveScanGrad runs ds_selective_scan_grad_f32 (N up to 256; more
// runs on the host), then sums the kernel's partial sums in double in a
// fixed order (no atomics: the same bits on every run): dA and dD over
// batch rows with ds_scan_grad_sum_f32, dBm and dCm over channel blocks
// with SumTo (ds_sum_to_f32). Device scratch for the call, from the
// allocator: the checkpointed and recomputed states, (ceil(T/K) + K) B E N
// floats with K about sqrt(T) (kernels.ScanGradGeometry); the partial sums
// of dA and dD, B E N and B E doubles; and those of dBm and dCm,
// B ceil(E/c) T N floats each, where c, the channels a block, is 128/L (32
// for N = 16: at B = 8, T = 2048, E = 1536, 72 MB of states and 50 MB for
// each of dBm and dCm).
func (b *Backend) SelectiveScanGrad(g api.ScanGrads, in api.ScanArgs, dy, dhT, dhs api.Tensor) {
	const op = "selective scan grad"
	s := b.scanInputs(op, in)
	B, T, E, N := s.B, s.T, s.E, s.N
	up, uhT, uhs := s.outputs(b, op, [3]string{"dy", "dhT", "dhs"}, dy, dhT, dhs)
	if g.D != nil && s.d == nil || g.H0 != nil && s.h0 == nil || g.Inject != nil && s.inj == nil {
		api.Panicf(api.ErrShape, "cuda: %s: gradient of D, H0 or Inject asked for without that input", op)
	}
	grad := func(what string, t api.Tensor, shape ...int) *Tensor {
		c := b.f32OrNil(t, op)
		if c != nil {
			wantShape(op, "gradient "+what, c, shape...)
		}
		return c
	}
	gx, gdt, ga := grad("X", g.X, B, T, E), grad("Delta", g.Delta, B, T, E), grad("A", g.A, E, N)
	gbm, gcm, gd := grad("Bm", g.Bm, B, T, N), grad("Cm", g.Cm, B, T, N), grad("D", g.D, E)
	gh0, ginj := grad("H0", g.H0, B, E, N), grad("Inject", g.Inject, B, T, E, N)
	if g == (api.ScanGrads{}) {
		return // nothing wanted
	}
	if B == 0 || E == 0 { // no channel of any row: the sums over them are zero
		for _, t := range []*Tensor{ga, gbm, gcm, gd} {
			if t != nil {
				b.Fill(t, 0)
			}
		}
		return
	}
	geo, K, err := kernels.ScanGradGeometry(B, T, E, N)
	if err != nil {
		b.onHost("SelectiveScanGrad (N > 256)", func(c api.Backend, h *hostCall) {
			c.(api.ScanKernels).SelectiveScanGrad(api.ScanGrads{
				X: h.out(g.X), Delta: h.out(g.Delta), A: h.out(g.A), Bm: h.out(g.Bm), Cm: h.out(g.Cm),
				D: h.out(g.D), H0: h.out(g.H0), Inject: h.out(g.Inject),
			}, hostScanArgs(h, in), h.in(dy), h.in(dhT), h.in(dhs))
		})
		return
	}
	nblk := int(geo.Grid.X)
	// scratch allocates a device buffer of the shape when want, else
	// returns nil (a null pointer for the kernel).
	var held []*Tensor
	defer func() {
		for _, t := range held {
			b.Free(t)
		}
	}()
	scratch := func(want bool, dtype api.DType, shape ...int) *Tensor {
		if !want {
			return nil
		}
		t := b.Alloc(dtype, shape...).(*Tensor)
		held = append(held, t)
		return t
	}
	ck := scratch(true, api.F32, B, (T+K-1)/K, E, N)
	hc := scratch(true, api.F32, B, min(K, T), E, N)
	pa, pd := scratch(ga != nil, api.F64, B, E, N), scratch(gd != nil, api.F64, B, E)
	pb, pc := scratch(gbm != nil, api.F32, B, nblk, T*N), scratch(gcm != nil, api.F32, B, nblk, T*N)
	b.launch("ds_selective_scan_grad_f32", geo, ptrOf(gx), ptrOf(gdt), ptrOf(ginj), ptrOf(gh0),
		ptrOf(pa), ptrOf(pd), ptrOf(pb), ptrOf(pc), ptrOf(ck), ptrOf(hc),
		s.x.ptr(), s.dt.ptr(), s.a.ptr(), s.bm.ptr(), s.cm.ptr(), ptrOf(s.d), ptrOf(s.h0), ptrOf(s.inj),
		up.ptr(), ptrOf(uhT), ptrOf(uhs), int32(T), int32(E), int32(N), int32(K))
	for _, r := range [][2]*Tensor{{ga, pa}, {gd, pd}} {
		if dst, part := r[0], r[1]; dst != nil && dst.numel() > 0 {
			n := int64(dst.numel())
			b.launch("ds_scan_grad_sum_f32", kernels.ElementGeometry(n), dst.ptr(), part.ptr(), int32(B), n)
		}
	}
	for _, r := range [][2]*Tensor{{gbm, pb}, {gcm, pc}} {
		if dst, part := r[0], r[1]; dst != nil {
			b.SumTo(b.Reshape(dst, B, 1, T*N), part)
		}
	}
}
