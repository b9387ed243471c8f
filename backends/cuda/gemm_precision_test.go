package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/backends/cuda/driver"
)

// MatMul under Options.GEMM (FP32, TF32, BF16) against the CPU backend's
// float32 MatMul, on the fake device and, where there is one, on the GPU.
//
// The tolerance of an element dst_ij, with S = sum_p |a_ip| |b_pj| over
// the K terms and c the element's value before the call:
//
//	|alpha| e S + 2 (K+4) 2^-23 (1+u)^2 (|alpha| S + |beta| |c|)
//
// The first term is the operands' rounding: each rounded operand is
// within u of itself, relative (TF32: u = 2^-10, sound whether tensor
// cores round to nearest, 2^-11, or truncate; BF16: u = 2^-8, round to
// nearest even by ds_convert_f32_bf16; FP32: u = 0), so a product of r
// rounded operands is within e = (1+u)^r - 1 of the exact one (r = 2, or 1
// with BF16 weights, which both backends read exactly). The second bounds
// each side's float32 arithmetic: K products summed and alpha, beta and
// the final rounding, at most K+3 roundings of at most 2^-24 each (so
// gamma_{K+3} < (K+4) 2^-24) of magnitudes at most (1+u)^2 (|alpha| S +
// |beta| |c|), on the CPU backend and again on the device (the fake sums
// in float64, a GPU in float32 in its own order), with a factor 2 to
// spare.

// gemmPrecisions are the options with their unit roundoffs.
var gemmPrecisions = []struct {
	p GEMMPrecision
	u float64
}{{GEMMFP32, 0}, {GEMMTF32, 0x1p-10}, {GEMMBF16, 0x1p-8}}

// TestGEMMPrecision checks MatMul under each precision on the fake device:
// its results (gemmCheck), and which cuBLAS calls and conversions it
// makes: FP32 launches cublasSgemm and never sets the math mode; TF32
// launches cublasSgemm and sets the math mode to TF32 once, at the first
// call; BF16 launches cublasGemmEx, converting each F32 operand with
// ds_convert_f32_bf16 and reading BF16 weights as stored (no
// ds_convert_bf16_f32).
func TestGEMMPrecision(t *testing.T) {
	for _, gp := range gemmPrecisions {
		t.Run(gp.p.String(), func(t *testing.T) {
			b := newFake(t, Options{GEMM: gp.p})
			gemmCheck(t, b, gp.p, gp.u)
			if n := fakeOf(b).launched()["cublasSetMathMode"]; n != map[GEMMPrecision]int{GEMMTF32: 1}[gp.p] {
				t.Errorf("cublasSetMathMode called %d times", n)
			}
			if m := fakeOf(b).math; m != map[GEMMPrecision]driver.MathMode{GEMMTF32: driver.TF32Math}[gp.p] {
				t.Errorf("the handle's math mode is %d", m)
			}
		})
	}
}

// TestGEMMPrecisionDevice is TestGEMMPrecision's gemmCheck on the GPU
// (the real cublasSgemm under each math mode, cublasGemmEx and
// cublasGemmStridedBatchedEx).
func TestGEMMPrecisionDevice(t *testing.T) {
	b := newDevice(t)
	for _, gp := range gemmPrecisions {
		t.Run(gp.p.String(), func(t *testing.T) {
			b.gemm = gp.p // as Options.GEMM would set it
			gemmCheck(t, b, gp.p, gp.u)
		})
	}
}

// gemmCheck runs MatMul on b in precision p against the CPU backend for
// the four transposition cases, each unbatched, batched ([2] on both
// operands) and broadcast (a rank-2 second operand shared by a batch of 3),
// with three (alpha, beta) pairs, and for BF16 weights (x W^T, W rank 2),
// within the tolerance above for unit roundoff u. On the fake device it
// also checks the calls (TestGEMMPrecision). Under TF32 and BF16 some
// element must differ from the CPU backend by more than FP32's tolerance:
// the precision took effect.
func gemmCheck(t *testing.T, b *Backend, p GEMMPrecision, u float64) {
	k := &kcheck{t: t, b: b, c: cpu.New(api.BackendOptions{Threads: 1}), rng: rand.New(rand.NewPCG(11, uint64(p)))}
	fake, _ := b.dev.(*fakeDevice)
	scalars := []struct{ alpha, beta float32 }{{1, 0}, {0.5, 1}, {-2, 0.25}}
	const M, K, N = 7, 40, 5
	var worst, own float64 // the largest error over FP32's tolerance, over p's
	for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
		for _, batch := range []struct{ a, b []int }{{nil, nil}, {[]int{2}, []int{2}}, {[]int{3}, nil}} {
			for _, sc := range scalars {
				as, bs := []int{M, K}, []int{K, N}
				if tr[0] {
					as = []int{K, M}
				}
				if tr[1] {
					bs = []int{N, K}
				}
				as, bs = slices.Concat(batch.a, as), slices.Concat(batch.b, bs)
				what := fmt.Sprintf("%v: MatMul a%v b%v transA=%v transB=%v alpha %v beta %v", p, as, bs, tr[0], tr[1], sc.alpha, sc.beta)
				av, bv := k.vals(api.Shape(as).NumElements()), k.vals(api.Shape(bs).NumElements())
				x, hx := k.pair(av, as...)
				w, hw := k.pair(bv, bs...)
				ds := slices.Concat(batch.a, []int{M, N})
				dst, hdst := k.rand(ds...)
				cv := api.Float32s(hdst)
				calls := gemmCalls(fake, func() { b.MatMul(dst, x, w, tr[0], tr[1], sc.alpha, sc.beta) })
				k.c.MatMul(hdst, hx, hw, tr[0], tr[1], sc.alpha, sc.beta)
				tol, fp32 := gemmTolerance(av, bv, cv, M, K, N, tr[0], tr[1], len(batch.a) > 0, len(batch.b) > 0, sc.alpha, sc.beta, u, 2)
				k.near(what, dst, hdst, 0, tol)
				worst, own = max(worst, overTolerance(dst, hdst, fp32)), max(own, overTolerance(dst, hdst, tol))
				wantCalls(t, what, p, calls, false)
			}
		}
	}
	// BF16 weights: x [3, M, K] or [M, K] times W^T, W [N, K] stored as BF16.
	for _, xb := range [][]int{nil, {3}} {
		for _, sc := range scalars {
			xs := slices.Concat(xb, []int{M, K})
			what := fmt.Sprintf("%v: MatMul x%v BF16 W[%d %d]^T alpha %v beta %v", p, xs, N, K, sc.alpha, sc.beta)
			av := k.vals(api.Shape(xs).NumElements())
			x, hx := k.pair(av, xs...)
			raw := make([]byte, 2*N*K)
			if err := api.EncodeFloat32(raw, api.BF16, k.vals(N*K)); err != nil {
				t.Fatal(err)
			}
			bv := make([]float32, N*K) // the weights as stored, exactly
			if err := api.DecodeFloat32(bv, api.BF16, raw); err != nil {
				t.Fatal(err)
			}
			w, hw := b.Alloc(api.BF16, N, K), k.c.Alloc(api.BF16, N, K)
			b.Upload(w, raw)
			k.c.Upload(hw, raw)
			dst, hdst := k.rand(slices.Concat(xb, []int{M, N})...)
			cv := api.Float32s(hdst)
			calls := gemmCalls(fake, func() { b.MatMul(dst, x, w, false, true, sc.alpha, sc.beta) })
			k.c.MatMul(hdst, hx, hw, false, true, sc.alpha, sc.beta)
			tol, fp32 := gemmTolerance(av, bv, cv, M, K, N, false, true, len(xb) > 0, false, sc.alpha, sc.beta, u, 1)
			k.near(what, dst, hdst, 0, tol)
			worst, own = max(worst, overTolerance(dst, hdst, fp32)), max(own, overTolerance(dst, hdst, tol))
			wantCalls(t, what, p, calls, true)
		}
	}
	if reduced := worst > 1; reduced != (p != GEMMFP32) {
		t.Errorf("%v: the largest error is %.3g of FP32's tolerance", p, worst)
	}
	t.Logf("%v: the largest error is %.3g of its tolerance, %.3g of FP32's", p, own, worst)
}

// gemmCalls runs fn and returns the fake device's launches it made (nil
// on the GPU).
func gemmCalls(f *fakeDevice, fn func()) map[string]int {
	if f == nil {
		fn()
		return nil
	}
	before := f.launched()
	fn()
	d := map[string]int{}
	for name, n := range f.launched() {
		if n != before[name] {
			d[name] = n - before[name]
		}
	}
	return d
}

// wantCalls checks the calls of one MatMul in precision p on the fake
// device (calls nil: on the GPU, nothing to check), its second operand a
// BF16 weight or F32: FP32 and TF32 launch one cublasSgemm, widening a
// BF16 weight with ds_convert_bf16_f32; BF16 launches one cublasGemmEx
// after a ds_convert_f32_bf16 for each F32 operand, never widening.
func wantCalls(t *testing.T, what string, p GEMMPrecision, calls map[string]int, bf16Weight bool) {
	t.Helper()
	if calls == nil {
		return
	}
	want := map[string]int{"cublasSgemm": 1, "cublasGemmEx": 0, "ds_convert_f32_bf16": 0, "ds_convert_bf16_f32": 0}
	switch {
	case p == GEMMBF16 && bf16Weight:
		want["cublasSgemm"], want["cublasGemmEx"], want["ds_convert_f32_bf16"] = 0, 1, 1
	case p == GEMMBF16:
		want["cublasSgemm"], want["cublasGemmEx"], want["ds_convert_f32_bf16"] = 0, 1, 2
	case bf16Weight:
		want["ds_convert_bf16_f32"] = 1
	}
	for name, n := range want {
		if calls[name] != n {
			t.Errorf("%s: %s launched %d times, want %d (launches %v)", what, name, calls[name], n, calls)
		}
	}
}

// gemmTolerance returns each element's tolerance (the comment at the top
// of this file) for operands av ([M,K], or [K,M] when transA) and bv ([K,N],
// or [N,K] when transB), each with a leading batch axis when batchA or
// batchB, dst's values before the call cv, of which r were rounded with
// unit roundoff u; and the same tolerance for FP32 (u = 0).
func gemmTolerance(av, bv, cv []float32, M, K, N int, transA, transB, batchA, batchB bool, alpha, beta float32, u float64, r int) (tol, fp32 []float64) {
	at := func(bi, i, p int) float64 {
		off := 0
		if batchA {
			off = bi * M * K
		}
		if transA {
			return math.Abs(float64(av[off+p*M+i]))
		}
		return math.Abs(float64(av[off+i*K+p]))
	}
	bt := func(bi, p, j int) float64 {
		off := 0
		if batchB {
			off = bi * K * N
		}
		if transB {
			return math.Abs(float64(bv[off+j*K+p]))
		}
		return math.Abs(float64(bv[off+p*N+j]))
	}
	e := math.Pow(1+u, float64(r)) - 1
	arith := 2 * float64(K+4) * 0x1p-23
	al, be := math.Abs(float64(alpha)), math.Abs(float64(beta))
	tol, fp32 = make([]float64, len(cv)), make([]float64, len(cv))
	for idx := range cv {
		bi, i, j := idx/(M*N), idx/N%M, idx%N
		var s float64
		for p := range K {
			s += at(bi, i, p) * bt(bi, p, j)
		}
		mag := al*s + be*math.Abs(float64(cv[idx]))
		tol[idx] = al*e*s + arith*(1+u)*(1+u)*mag
		fp32[idx] = arith * mag
	}
	return tol, fp32
}

// overTolerance returns the largest |got - want| / tol over the elements.
func overTolerance(got, want api.Tensor, tol []float64) float64 {
	g, w := api.Float32s(got), api.Float32s(want)
	var worst float64
	for i := range w {
		worst = max(worst, math.Abs(float64(g[i])-float64(w[i]))/tol[i])
	}
	return worst
}

// TestGEMMBF16DecodeFake runs decode steps of Mamba and RetNet built
// with BF16 weights on the fake device with GEMM BF16 against the CPU
// backend's float32 steps of the same BF16 weights: no host round-trip, no
// widening of the weights (no ds_convert_bf16_f32), every GEMM a
// cublasGemmEx, and logits within 1e-2 of the CPU backend's, relative to
// the largest: each MatMul rounds its activations to BF16 (up to 2^-8
// relative error each), which the layers carry on (3.5e-3 seen with these
// tiny models), where FP32 agrees to 1e-4 (TestDecodeStepFake). The
// logits must also differ (the rounding took effect).
func TestGEMMBF16DecodeFake(t *testing.T) {
	for _, name := range []string{"mamba", "retnet"} {
		t.Run(name, func(t *testing.T) {
			b := newFake(t, Options{GEMM: GEMMBF16})
			m := tinyModel(t, name, api.BuildOptions{On: b, Seed: 3, Weights: api.BF16})
			ref := tinyModel(t, name, api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: 2}), Seed: 3, Weights: api.BF16})
			step := stepBoth(t, m, ref)
			hostBefore, before := b.HostOps(), fakeOf(b).launched()
			var worst float64
			for i, tok := range []int32{1, 5, 9, 33, 2} {
				got, want := step(tok)
				e := maxRel(got, want)
				if e > 1e-2 {
					t.Errorf("step %d: logits differ from the CPU backend's by %g (relative)", i, e)
				}
				worst = max(worst, e)
			}
			if worst == 0 {
				t.Error("the logits are the CPU backend's to the bit: the activations were not rounded to BF16")
			}
			for op, n := range b.HostOps() {
				if n != hostBefore[op] {
					t.Errorf("%s went through the host %d times", op, n-hostBefore[op])
				}
			}
			after := fakeOf(b).launched()
			if d := after["ds_convert_bf16_f32"] - before["ds_convert_bf16_f32"]; d != 0 {
				t.Errorf("the weights were widened %d times", d)
			}
			if d := after["cublasSgemm"] - before["cublasSgemm"]; d != 0 {
				t.Errorf("cublasSgemm launched %d times", d)
			}
			if after["cublasGemmEx"] == before["cublasGemmEx"] {
				t.Error("no cublasGemmEx")
			}
			t.Logf("largest relative difference from the CPU backend: %.3g", worst)
		})
	}
}

// TestGEMMEnv checks DENSESSM_CUDA_GEMM: each precision by name (in any
// case), and an unknown name or an Options.GEMM out of range an error
// wrapping api.ErrConfig that names the variable or the option.
func TestGEMMEnv(t *testing.T) {
	t.Setenv(FakeEnv, "1")
	for name, want := range map[string]GEMMPrecision{"": GEMMFP32, "fp32": GEMMFP32, "tf32": GEMMTF32, "bf16": GEMMBF16, "BF16": GEMMBF16} {
		t.Setenv(GEMMEnv, name)
		be, err := api.NewBackend("cuda", api.BackendOptions{Threads: 1})
		if err != nil {
			t.Fatalf("%s=%q: %v", GEMMEnv, name, err)
		}
		if got := be.(*Backend).gemm; got != want {
			t.Errorf("%s=%q: precision %v, want %v", GEMMEnv, name, got, want)
		}
		be.(*Backend).Close()
	}
	t.Setenv(GEMMEnv, "fp16")
	if _, err := api.NewBackend("cuda", api.BackendOptions{Threads: 1}); !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), GEMMEnv) || !strings.Contains(err.Error(), `"fp16"`) {
		t.Errorf("%s=fp16: error %v", GEMMEnv, err)
	}
	if _, err := NewWith(Options{Fake: true, GEMM: GEMMBF16 + 1}); !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), "Options.GEMM") {
		t.Errorf("Options.GEMM out of range: error %v", err)
	}
	for _, gp := range gemmPrecisions {
		if p, err := ParseGEMMPrecision(gp.p.String()); err != nil || p != gp.p {
			t.Errorf("ParseGEMMPrecision(%q) = %v, %v", gp.p.String(), p, err)
		}
	}
}

// TestRoundTF32 checks the fake device's FP32 to TF32 rounding: to
// nearest, ties away from zero, carries into the exponent, infinity past
// the largest TF32 value, infinities and NaN kept.
func TestRoundTF32(t *testing.T) {
	const ulp = 0x1p-10 // of TF32 in [1, 2)
	for _, c := range []struct{ in, want float32 }{
		{1, 1}, {1 + ulp, 1 + ulp},
		{1 + ulp/2 - 0x1p-23, 1}, {1 + ulp/2, 1 + ulp}, {-(1 + ulp/2), -(1 + ulp)}, // a tie goes away from zero
		{1 + 3*ulp/2, 1 + 2*ulp}, {2 - ulp/2, 2}, {math.MaxFloat32, float32(math.Inf(1))},
		{float32(math.Inf(-1)), float32(math.Inf(-1))}, {0, 0},
		{0x1p-136, 0x1p-136}, {0x1p-137, 0x1p-136}, {0x1p-140, 0}, // subnormals: multiples of 2^-136
	} {
		if got := roundTF32(c.in); got != c.want {
			t.Errorf("roundTF32(%x) = %x, want %x", c.in, got, c.want)
		}
	}
	if nan := roundTF32(float32(math.NaN())); nan == nan {
		t.Error("NaN not kept")
	}
}
