package cuda

import (
	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// scanOnHost runs the selective scan on the host.
func (b *Backend) scanOnHost(op string, y, hT, hs api.Tensor, in api.ScanArgs) {
	b.onHost(op, func(c api.Backend, h *hostCall) {
		c.(api.ScanKernels).SelectiveScan(h.out(y), h.out(hT), h.out(hs), api.ScanArgs{
			X: h.in(in.X), Delta: h.in(in.Delta), A: h.in(in.A), Bm: h.in(in.Bm), Cm: h.in(in.Cm),
			D: h.in(in.D), H0: h.in(in.H0), Inject: h.in(in.Inject),
		})
	})
}

// SelectiveScan runs ds_selective_scan_f32 (N up to 256; more runs on the
// host).
func (b *Backend) SelectiveScan(y, hT, hs api.Tensor, in api.ScanArgs) {
	const op = "selective scan"
	x, dt := b.f32(in.X, op), b.f32(in.Delta, op)
	if len(x.shape) != 3 {
		api.Panicf(api.ErrShape, "cuda: %s: X %v, want [B,T,E]", op, x.shape)
	}
	B, T, E := x.shape[0], x.shape[1], x.shape[2]
	a := b.f32(in.A, op)
	if len(a.shape) != 2 || a.shape[0] != E {
		api.Panicf(api.ErrShape, "cuda: %s: A %v, want [%d,N]", op, a.shape, E)
	}
	N := a.shape[1]
	wantShape(op, "Delta", dt, B, T, E)
	bm, cm := b.f32(in.Bm, op), b.f32(in.Cm, op)
	wantShape(op, "Bm", bm, B, T, N)
	wantShape(op, "Cm", cm, B, T, N)
	dd, h0, inj := b.f32OrNil(in.D, op), b.f32OrNil(in.H0, op), b.f32OrNil(in.Inject, op)
	if dd != nil {
		wantShape(op, "D", dd, E)
	}
	if h0 != nil {
		wantShape(op, "H0", h0, B, E, N)
	}
	if inj != nil {
		wantShape(op, "Inject", inj, B, T, E, N)
	}
	yt, ht, hst := b.f32(y, op), b.f32OrNil(hT, op), b.f32OrNil(hs, op)
	wantShape(op, "y", yt, B, T, E)
	if ht != nil {
		wantShape(op, "hT", ht, B, E, N)
	}
	if hst != nil {
		wantShape(op, "hs", hst, B, T, E, N)
	}
	if B == 0 || E == 0 || N == 0 {
		return // no states, no outputs with elements
	}
	g, tc, err := kernels.ScanGeometry(B, E, N)
	if err != nil {
		b.scanOnHost("SelectiveScan (N > 256)", y, hT, hs, in)
		return
	}
	b.launch("ds_selective_scan_f32", g, yt.ptr(), ptrOf(ht), ptrOf(hst), x.ptr(), dt.ptr(), a.ptr(), bm.ptr(), cm.ptr(),
		ptrOf(dd), ptrOf(h0), ptrOf(inj), int32(T), int32(E), int32(N), int32(tc))
}

// SelectiveScanGrad runs on the host.
func (b *Backend) SelectiveScanGrad(g api.ScanGrads, in api.ScanArgs, dy, dhT, dhs api.Tensor) {
	b.onHost("SelectiveScanGrad", func(c api.Backend, h *hostCall) {
		c.(api.ScanKernels).SelectiveScanGrad(api.ScanGrads{
			X: h.out(g.X), Delta: h.out(g.Delta), A: h.out(g.A), Bm: h.out(g.Bm), Cm: h.out(g.Cm),
			D: h.out(g.D), H0: h.out(g.H0), Inject: h.out(g.Inject),
		}, api.ScanArgs{
			X: h.in(in.X), Delta: h.in(in.Delta), A: h.in(in.A), Bm: h.in(in.Bm), Cm: h.in(in.Cm),
			D: h.in(in.D), H0: h.in(in.H0), Inject: h.in(in.Inject),
		}, h.in(dy), h.in(dhT), h.in(dhs))
	})
}
