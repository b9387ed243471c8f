package cuda

import (
	"math"
	"unsafe"

	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// The Go models of scan_grad.cu's kernels on the fake device.

func init() {
	fakeKernels["ds_selective_scan_grad_f32"] = fakeScanGrad
	fakeKernels["ds_scan_grad_sum_f32"] = fakeScanGradSum
}

// fakeF64s returns n doubles at p on the fake device (nil for a null
// pointer).
func fakeF64s(f *fakeDevice, p driver.DevicePtr, n int64) []float64 {
	if p == 0 || n == 0 {
		return nil
	}
	b := f.span(p, 8*n)
	return unsafe.Slice((*float64)(unsafe.Pointer(&b[0])), n)
}

// fakeScanStep is ds_scan_grad_step: one token of the forward recurrence
// for one state, each product and sum rounded to float.
func fakeScanStep(h, dt, a, bn, x float32, inj []float32, i int64) float32 {
	hn := float32(fakeExpf(float32(dt*a))*h) + float32(float32(dt*bn)*x)
	if inj != nil {
		hn += inj[i]
	}
	return hn
}

// fakeExpf models expf.
func fakeExpf(v float32) float32 { return float32(math.Exp(float64(v))) }

// fakeLaneSum models a channel's sum over its states: lane l adds the
// terms of n = l, l+L, ... in order, then the xor-shuffle reduction over
// the L lanes; the result is lane 0's.
func fakeLaneSum(terms []float64, L int64) float64 {
	v := make([]float64, L)
	for n, t := range terms {
		v[int64(n)%L] += t
	}
	w := make([]float64, L)
	for o := L >> 1; o > 0; o >>= 1 {
		copy(w, v)
		for l := range L {
			v[l] = w[l] + w[l^o]
		}
	}
	return v[0]
}

// fakeScanGrad models ds_selective_scan_grad_f32 block by block: the
// block's threads' registers are arrays over its channels and states, the
// threads' work for a token runs channel after channel, and the
// cross-thread sums (the lane shuffles, the block's sums over channels)
// are taken in the kernel's order.
func fakeScanGrad(f *fakeDevice, g kernels.Geometry, a fakeArgs) {
	L, CH, nblk, B := int64(g.Block.X), int64(g.Block.Y), int64(g.Grid.X), int64(g.Grid.Y)
	T, E, N, K := int64(a.i32(21)), int64(a.i32(22)), int64(a.i32(23)), int64(a.i32(24))
	NC := (T + K - 1) / K
	dX, dDelta := f.f32s(a.ptr(0), B*T*E), f.f32s(a.ptr(1), B*T*E)
	dInj, dH0 := f.f32s(a.ptr(2), B*T*E*N), f.f32s(a.ptr(3), B*E*N)
	partA, partD := fakeF64s(f, a.ptr(4), B*E*N), fakeF64s(f, a.ptr(5), B*E)
	partB, partC := f.f32s(a.ptr(6), B*nblk*T*N), f.f32s(a.ptr(7), B*nblk*T*N)
	ck, hc := f.f32s(a.ptr(8), B*NC*E*N), f.f32s(a.ptr(9), B*min(K, T)*E*N)
	X, Dt, A := f.f32s(a.ptr(10), B*T*E), f.f32s(a.ptr(11), B*T*E), f.f32s(a.ptr(12), E*N)
	Bm, Cm := f.f32s(a.ptr(13), B*T*N), f.f32s(a.ptr(14), B*T*N)
	D, H0, Inj := f.f32s(a.ptr(15), E), f.f32s(a.ptr(16), B*E*N), f.f32s(a.ptr(17), B*T*E*N)
	dy, dhT, dhs := f.f32s(a.ptr(18), B*T*E), f.f32s(a.ptr(19), B*E*N), f.f32s(a.ptr(20), B*T*E*N)

	h, av := make([]float32, CH*N), make([]float32, CH*N) // [channel][state]
	dh, dA := make([]float64, CH*N), make([]float64, CH*N)
	dDsum := make([]float64, CH)
	sB, sC := make([]float32, K*N), make([]float32, K*N)
	sRB, sRC := make([]float64, CH*N), make([]float64, CH*N)
	gx, gd := make([]float64, N), make([]float64, N)
	for b := range B {
		for blk := range nblk {
			e0 := blk * CH
			nch := min(CH, E-e0)
			for y := range nch {
				e, ben := e0+y, (b*E+e0+y)*N
				dDsum[y] = 0
				for n := range N {
					i := y*N + n
					av[i], h[i], dh[i], dA[i] = A[e*N+n], 0, 0, 0
					if H0 != nil {
						h[i] = H0[ben+n]
					}
					if dhT != nil {
						dh[i] = float64(dhT[ben+n])
					}
				}
			}
			stage := func(t0, count int64, withC bool) {
				for i := range count {
					sB[i] = Bm[(b*T+t0)*N+i]
					if withC {
						sC[i] = Cm[(b*T+t0)*N+i]
					}
				}
			}
			// steps runs tokens [t0, t0+kc) forward, storing each state
			// before its token at hc's slot k when save.
			steps := func(t0, kc int64, save bool) {
				for k := range kc {
					for y := range nch {
						e := e0 + y
						bte := (b*T+t0+k)*E + e
						x, dt := X[bte], Dt[bte]
						for n := range N {
							i := y*N + n
							if save {
								hc[((b*K+k)*E+e)*N+n] = h[i]
							}
							h[i] = fakeScanStep(h[i], dt, av[i], sB[k*N+n], x, Inj, bte*N+n)
						}
					}
				}
			}
			// Pass 1: the checkpoints.
			for c := range NC {
				for y := range nch {
					copy(ck[((b*NC+c)*E+e0+y)*N:][:N], h[y*N:(y+1)*N])
				}
				if c == NC-1 {
					break
				}
				stage(c*K, K*N, false)
				steps(c*K, K, false)
			}
			// Pass 2: the chunks from the last to the first.
			for c := NC - 1; c >= 0; c-- {
				t0 := c * K
				kc := min(K, T-t0)
				stage(t0, kc*N, true)
				for y := range nch {
					copy(h[y*N:(y+1)*N], ck[((b*NC+c)*E+e0+y)*N:][:N])
				}
				steps(t0, kc, true)
				for k := kc - 1; k >= 0; k-- {
					t := t0 + k
					for y := range nch {
						e := e0 + y
						bte := (b*T+t)*E + e
						x, dt, gy := X[bte], Dt[bte], float64(dy[bte])
						for n := range N {
							i, at := y*N+n, bte*N+n
							hprev := hc[((b*K+k)*E+e)*N+n]
							decay := fakeExpf(dt * av[i])
							hp := float64(hprev) * float64(decay)
							bn := float64(sB[k*N+n])
							var up float32
							if dhs != nil {
								up = dhs[at]
							}
							gh := dh[i] + gy*float64(sC[k*N+n])
							if dInj != nil {
								dInj[at] = float32(gh)
							}
							if partC != nil {
								sRC[i] = gy * float64(h[i])
							}
							gh += float64(up)
							if partB != nil {
								sRB[i] = gh * float64(dt) * float64(x)
							}
							gx[n] = gh * float64(dt) * bn
							gd[n] = gh * (bn*float64(x) + hp*float64(av[i]))
							dA[i] += gh * hp * float64(dt)
							dh[i] = gh * float64(decay)
							h[i] = hprev
						}
						sx, sd := fakeLaneSum(gx, L), fakeLaneSum(gd, L)
						if D != nil {
							sx += gy * float64(D[e])
							dDsum[y] += gy * float64(x)
						}
						if dX != nil {
							dX[bte] = float32(sx)
						}
						if dDelta != nil {
							dDelta[bte] = float32(sd)
						}
					}
					if partB == nil && partC == nil {
						continue
					}
					for n := range N {
						var sb, sc float64
						for y := range nch {
							sb += sRB[y*N+n]
							sc += sRC[y*N+n]
						}
						p := ((b*nblk+blk)*T+t)*N + n
						if partB != nil {
							partB[p] = float32(sb)
						}
						if partC != nil {
							partC[p] = float32(sc)
						}
					}
				}
			}
			for y := range nch {
				ben := (b*E + e0 + y) * N
				for n := range N {
					if dH0 != nil {
						dH0[ben+n] = float32(dh[y*N+n])
					}
					if partA != nil {
						partA[ben+n] = dA[y*N+n]
					}
				}
				if partD != nil {
					partD[b*E+e0+y] = dDsum[y]
				}
			}
		}
	}
}

// fakeScanGradSum models ds_scan_grad_sum_f32.
func fakeScanGradSum(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	B, n := int64(a.i32(2)), a.i64(3)
	dst, part := f.f32s(a.ptr(0), n), fakeF64s(f, a.ptr(1), B*n)
	for i := range n {
		var acc float64
		for b := range B {
			acc += part[b*n+i]
		}
		dst[i] = float32(acc)
	}
}
