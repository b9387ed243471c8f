package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// The kernels of SoftmaxGrad, LogSoftmaxGrad, CausalConv1dGrad, the Q8_0
// conversions, Gather and MatMul, and Convert from I64 to I32, on the fake
// device against the CPU backend.

// kcheck runs an op on the fake device and on the CPU backend with the same
// random inputs.
type kcheck struct {
	t   *testing.T
	b   *Backend
	c   api.Backend
	rng *rand.Rand
}

func newKCheck(t *testing.T, seed uint64) *kcheck {
	return &kcheck{t: t, b: newFake(t, Options{}), c: cpu.New(api.BackendOptions{Threads: 1}), rng: rand.New(rand.NewPCG(seed, 17))}
}

// vals returns n values in [-1, 1).
func (k *kcheck) vals(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(2*k.rng.Float64() - 1)
	}
	return v
}

// pair uploads v to both backends.
func (k *kcheck) pair(v []float32, shape ...int) (dev, host api.Tensor) {
	return api.FromFloat32s(k.b, v, shape...), api.FromFloat32s(k.c, v, shape...)
}

// rand is pair of random values.
func (k *kcheck) rand(shape ...int) (dev, host api.Tensor) {
	return k.pair(k.vals(api.Shape(shape).NumElements()), shape...)
}

// out is pair of NaNs: outputs the op must overwrite.
func (k *kcheck) out(shape ...int) (dev, host api.Tensor) {
	v := make([]float32, api.Shape(shape).NumElements())
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return k.pair(v, shape...)
}

// run runs fn and checks that it launched kernel n times and went through
// the host never.
func (k *kcheck) run(what, kernel string, n int, fn func()) {
	k.t.Helper()
	before, hostBefore := fakeOf(k.b).launched(), k.b.HostOps()
	fn()
	after, hostAfter := fakeOf(k.b).launched(), k.b.HostOps()
	if d := after[kernel] - before[kernel]; d != n {
		k.t.Errorf("%s: %s launched %d times, want %d", what, kernel, d, n)
	}
	if len(hostAfter) != len(hostBefore) {
		k.t.Errorf("%s: went through the host: %v", what, hostAfter)
	}
}

// near checks got against want: |got - want| <= rel |want| + abs[i] (abs
// nil: 0), no NaN in got.
func (k *kcheck) near(what string, got, want api.Tensor, rel float64, abs []float64) {
	k.t.Helper()
	g, w := api.Float32s(got), api.Float32s(want)
	for i := range w {
		tol := rel * math.Abs(float64(w[i]))
		if abs != nil {
			tol += abs[i]
		}
		if d := math.Abs(float64(g[i]) - float64(w[i])); !(d <= tol) || g[i] != g[i] {
			k.t.Errorf("%s: element %d is %v, want %v (tolerance %g)", what, i, g[i], w[i], tol)
			return
		}
	}
}

// panicsWith checks that fn panics with an error wrapping want.
func panicsWith(t *testing.T, what string, want error, fn func()) {
	t.Helper()
	err, _ := catch(fn).(error)
	if !errors.Is(err, want) {
		t.Errorf("%s: panic %v, want %v", what, err, want)
	}
}

// TestSoftmaxGradKernels checks ds_softmax_grad_f32 and
// ds_log_softmax_grad_f32 against the CPU backend on rows shorter and
// longer than the block of 256 threads (not multiples of it), empty tensors,
// and dx aliasing y or dy. Both sum in double and differ only in the order
// of the sum; the tolerance, 1e-6 relative plus 1e-9, allows the float32
// rounding of a double that lands differently (1 ulp) and the double
// error of a difference that cancels.
func TestSoftmaxGradKernels(t *testing.T) {
	k := newKCheck(t, 1)
	for _, sh := range [][]int{{1, 1}, {3, 5}, {2, 3, 257}, {4, 1000}, {1, 256}, {0, 7}, {5, 0}} {
		for _, log := range []bool{false, true} {
			kernel, name := "ds_softmax_grad_f32", "SoftmaxGrad"
			fwd, grad, hgrad := k.c.Softmax, k.b.SoftmaxGrad, k.c.SoftmaxGrad
			if log {
				kernel, name = "ds_log_softmax_grad_f32", "LogSoftmaxGrad"
				fwd, grad, hgrad = k.c.LogSoftmax, k.b.LogSoftmaxGrad, k.c.LogSoftmaxGrad
			}
			launches := 0
			if api.Shape(sh).NumElements() > 0 {
				launches = 1
			}
			for _, alias := range []string{"", "dx=y", "dx=dy"} {
				what := fmt.Sprintf("%s %v %s", name, sh, alias)
				// y from the CPU backend's forward on both: the gradient's
				// difference dy - sum cancels, and would magnify a 1 ulp
				// difference of the forwards.
				_, hx := k.rand(sh...)
				hy := k.c.Alloc(api.F32, sh...)
				fwd(hy, hx)
				y, hy := k.pair(api.Float32s(hy), sh...)
				dy, hdy := k.rand(sh...)
				dx, hdx := k.out(sh...)
				switch alias {
				case "dx=y":
					dx, hdx = y, hy
				case "dx=dy":
					dx, hdx = dy, hdy
				}
				k.run(what, kernel, launches, func() { grad(dx, y, dy) })
				hgrad(hdx, hy, hdy)
				k.near(what, dx, hdx, 1e-6, filled(api.Shape(sh).NumElements(), 1e-9))
			}
		}
	}
	panicsWith(t, "SoftmaxGrad of other shapes", api.ErrShape, func() {
		k.b.SoftmaxGrad(k.b.Alloc(api.F32, 2, 3), k.b.Alloc(api.F32, 2, 3), k.b.Alloc(api.F32, 3, 2))
	})
	panicsWith(t, "LogSoftmaxGrad of a BF16 dy", api.ErrDType, func() {
		k.b.LogSoftmaxGrad(k.b.Alloc(api.F32, 2, 3), k.b.Alloc(api.F32, 2, 3), k.b.Alloc(api.BF16, 2, 3))
	})
}

// filled returns n copies of v.
func filled(n int, v float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// TestCausalConv1dGradKernels checks ds_causal_conv1d_grad_x_f32 and
// ds_causal_conv1d_grad_w_f32 against the CPU backend for K in {1, 4}, T
// in {0, 1, 9, 40}, channels in and across tiles of 32, with and without
// prev, each output nil in turn, and dprev asked for with prev nil. dx and
// dprev are the same float32 sums in the same order as the CPU backend's:
// they must be equal. dw and dbias are sums in double in another order,
// rounded to float32 once: 1e-6 relative, plus 1e-9 for a sum that
// cancels.
func TestCausalConv1dGradKernels(t *testing.T) {
	k := newKCheck(t, 2)
	type dims struct{ B, T, C, K int }
	cases := []dims{{1, 1, 1, 1}, {2, 9, 5, 4}, {1, 0, 3, 4}, {2, 1, 33, 4}, {3, 40, 70, 4}, {2, 9, 33, 1}, {0, 5, 3, 4}, {1, 9, 0, 4}}
	masks := []string{"all", "no dx", "no dw", "no dbias", "no dprev", "dx only", "dw only", "dprev only", "none"}
	for _, d := range cases {
		for _, withPrev := range []bool{true, false} {
			for _, mask := range masks {
				what := fmt.Sprintf("%+v prev=%v %s", d, withPrev, mask)
				x, hx := k.rand(d.B, d.T, d.C)
				w, hw := k.rand(d.C, d.K)
				dy, hdy := k.rand(d.B, d.T, d.C)
				var prev, hprev api.Tensor
				if withPrev {
					prev, hprev = k.rand(d.B, d.K-1, d.C)
				}
				dx, hdx := k.out(d.B, d.T, d.C)
				dw, hdw := k.out(d.C, d.K)
				db, hdb := k.out(d.C)
				dp, hdp := k.out(d.B, d.K-1, d.C)
				want := map[string]bool{"dx": true, "dw": true, "dbias": true, "dprev": true}
				switch mask {
				case "none":
					clear(want)
				case "dx only", "dw only", "dprev only":
					clear(want)
					want[mask[:len(mask)-len(" only")]] = true
				case "all":
				default:
					delete(want, mask[len("no "):])
				}
				pick := func(name string, t api.Tensor) api.Tensor {
					if !want[name] {
						return nil
					}
					return t
				}
				xLaunch, wLaunch := 0, 0
				if (want["dx"] || want["dprev"]) && d.B*(d.T+d.K-1)*d.C > 0 {
					xLaunch = 1
				}
				if (want["dw"] || want["dbias"]) && d.C > 0 {
					wLaunch = 1
				}
				k.run(what, "ds_causal_conv1d_grad_w_f32", wLaunch, func() {
					k.run(what, "ds_causal_conv1d_grad_x_f32", xLaunch, func() {
						k.b.CausalConv1dGrad(pick("dx", dx), pick("dw", dw), pick("dbias", db), pick("dprev", dp), x, w, prev, dy)
					})
				})
				k.c.(api.ConvKernels).CausalConv1dGrad(pick("dx", hdx), pick("dw", hdw), pick("dbias", hdb), pick("dprev", hdp), hx, hw, hprev, hdy)
				if want["dx"] {
					k.near(what+" dx", dx, hdx, 0, nil)
				}
				if want["dprev"] {
					k.near(what+" dprev", dp, hdp, 0, nil)
				}
				if want["dw"] {
					k.near(what+" dw", dw, hdw, 1e-6, filled(d.C*d.K, 1e-9))
				}
				if want["dbias"] {
					k.near(what+" dbias", db, hdb, 1e-6, filled(d.C, 1e-9))
				}
				for name, tt := range map[string]api.Tensor{"dx": dx, "dw": dw, "dbias": db, "dprev": dp} {
					if want[name] {
						continue
					}
					for i, v := range api.Float32s(tt) {
						if v == v {
							t.Errorf("%s: %s, not asked for, was written (element %d is %v)", what, name, i, v)
							break
						}
					}
				}
			}
		}
	}
	f := func(shape ...int) api.Tensor { return k.b.Alloc(api.F32, shape...) }
	panicsWith(t, "CausalConv1dGrad with a wrong dw", api.ErrShape, func() {
		k.b.CausalConv1dGrad(nil, f(3, 3), nil, nil, f(1, 2, 3), f(3, 4), nil, f(1, 2, 3))
	})
	panicsWith(t, "CausalConv1dGrad with a wrong dy", api.ErrShape, func() {
		k.b.CausalConv1dGrad(f(1, 2, 3), nil, nil, nil, f(1, 2, 3), f(3, 4), nil, f(1, 3, 3))
	})
	panicsWith(t, "CausalConv1dGrad with a wrong prev", api.ErrShape, func() {
		k.b.CausalConv1dGrad(f(1, 2, 3), nil, nil, nil, f(1, 2, 3), f(3, 4), f(1, 2, 3), f(1, 2, 3))
	})
}

// q8Pair converts v to Q8_0 [rows, cols] on both backends.
func (k *kcheck) q8Pair(v []float32, rows, cols int) (dev, host api.Tensor) {
	x, hx := k.pair(v, rows, cols)
	dev, host = k.b.Alloc(api.Q8_0, rows, cols), k.c.Alloc(api.Q8_0, rows, cols)
	k.run(fmt.Sprintf("Convert F32 to Q8_0 [%d %d]", rows, cols), "ds_convert_f32_q8_0", min(1, rows*cols), func() { k.b.Convert(dev, x) })
	k.c.Convert(host, hx)
	return dev, host
}

// rawOf downloads t's bytes.
func rawOf(t api.Tensor) []byte {
	raw := make([]byte, t.DType().Bytes(t.Shape().NumElements()))
	t.Backend().Download(raw, t)
	return raw
}

// q8Values returns random values for rows x cols with the special blocks:
// a zero block, a block with one large value, a block of equal
// magnitudes (every q ±127), tiny values (a scale below float16's
// normal range) and halves (ties of the rounding).
func (k *kcheck) q8Values(rows, cols int) []float32 {
	v := k.vals(rows * cols)
	for i := range v {
		v[i] *= 3
	}
	n := len(v) / api.Q8Block
	if n > 1 {
		clear(v[32:64])
	}
	if n > 2 {
		v[64+7] = 40
	}
	if n > 3 {
		for i := 96; i < 128; i++ {
			v[i] = float32(1-2*(i%2)) * 0.75
		}
	}
	if n > 4 {
		for i := 128; i < 160; i++ {
			v[i] *= 1e-6
		}
	}
	if n > 5 { // scale 1: x.5 ties, rounded away from zero
		v[160] = 127
		for i := 161; i < 192; i++ {
			v[i] = float32(i%7-3) + 0.5
		}
	}
	return v
}

// TestQ8Kernels checks ds_convert_f32_q8_0 and ds_convert_q8_0_f32 (the same
// bytes and values as the CPU backend's Convert: exact), ds_gather_q8_0
// (exact, an id out of range, no rows) on tables of one to nine blocks a
// row.
func TestQ8Kernels(t *testing.T) {
	k := newKCheck(t, 3)
	for _, sh := range [][2]int{{1, 32}, {3, 96}, {5, 64}, {7, 288}, {2, 0}, {0, 32}} {
		rows, cols := sh[0], sh[1]
		what := fmt.Sprintf("Q8_0 [%d %d]", rows, cols)
		q, hq := k.q8Pair(k.q8Values(rows, cols), rows, cols)
		if g, w := rawOf(q), rawOf(hq); string(g) != string(w) {
			t.Errorf("%s: F32 to Q8_0 differs from the CPU backend's: % x, want % x", what, g, w)
		}
		back, hback := k.out(rows, cols)
		k.run(what+" to F32", "ds_convert_q8_0_f32", min(1, rows*cols), func() { k.b.Convert(back, q) })
		k.c.Convert(hback, hq)
		k.near(what+" to F32", back, hback, 0, nil)
		if rows == 0 {
			continue
		}
		for _, ids := range [][]int32{{0}, {int32(rows - 1), 0, int32(rows - 1)}, {}} {
			gw := fmt.Sprintf("Gather %v from %s", ids, what)
			dst, hdst := k.out(len(ids), cols)
			x, hx := api.FromInt32s(k.b, ids, len(ids)), api.FromInt32s(k.c, ids, len(ids))
			k.run(gw, "ds_gather_q8_0", min(1, len(ids)*cols), func() { k.b.Gather(dst, q, x) })
			k.c.Gather(hdst, hq, hx)
			k.near(gw, dst, hdst, 0, nil)
		}
		k.run(what+" bad id", "ds_gather_q8_0", min(1, cols), func() {
			panicsWith(t, what+": Gather of id "+fmt.Sprint(rows), api.ErrOutOfRange, func() {
				k.b.Gather(k.b.Alloc(api.F32, 3, cols), q, api.FromInt32s(k.b, []int32{0, int32(rows), -1}, 3))
			})
		})
	}
}

// TestQ8MatMul checks MatMul with a Q8_0 weight (widened by
// ds_convert_q8_0_f32, then cublasSgemm) against the CPU backend, for one
// to 70 rows of x (a batch [2, m, k] sharing W), alpha and beta. Products of
// up to 8 rows on the CPU backend round x to 16 bits a block of 32 (up to
// amax/65534 an element, amax the block's largest |x|), where the device
// multiplies the float32 values; and both round their float32 sums in
// other orders. So row i, column j is allowed
//
//	|alpha| (sum_p |w_jp| amax_p / 65534 + 2 k 2^-24 sum_p |x_ip w_jp|) + 1e-6 |want|.
func TestQ8MatMul(t *testing.T) {
	k := newKCheck(t, 4)
	type size struct{ m, k, n int }
	scalars := []struct{ alpha, beta float32 }{{1, 0}, {0.5, 1}, {-2, 0.25}}
	for _, s := range []size{{1, 32, 3}, {1, 32, 1}, {2, 96, 9}, {8, 288, 33}, {9, 32, 5}, {70, 288, 130}, {3, 64, 0}, {0, 64, 4}} {
		for si, sc := range scalars {
			batch := []int{}
			if si == 2 {
				batch = []int{2}
			}
			what := fmt.Sprintf("MatMul x%v[%d %d] Q8_0[%d %d]^T alpha %v beta %v", batch, s.m, s.k, s.n, s.k, sc.alpha, sc.beta)
			wv := k.vals(s.n * s.k)
			w, hw := k.q8Pair(wv, s.n, s.k)
			wq := api.Float32s(func() api.Tensor { f := k.c.Alloc(api.F32, s.n, s.k); k.c.Convert(f, hw); return f }())
			xs, ds := slices.Concat(batch, []int{s.m, s.k}), slices.Concat(batch, []int{s.m, s.n})
			xv := k.vals(api.Shape(xs).NumElements())
			x, hx := k.pair(xv, xs...)
			dst, hdst := k.rand(ds...)
			launches := 0
			if s.m > 0 && s.n > 0 {
				launches = 1
			}
			k.run(what, "ds_convert_q8_0_f32", launches, func() {
				k.run(what, "cublasSgemm", launches, func() { k.b.MatMul(dst, x, w, false, true, sc.alpha, sc.beta) })
			})
			k.c.MatMul(hdst, hx, hw, false, true, sc.alpha, sc.beta)
			rows := len(xv) / max(s.k, 1)
			tol := make([]float64, rows*s.n)
			for i := range rows {
				xr := xv[i*s.k : (i+1)*s.k]
				for j := range s.n {
					var q16, mag float64
					for p := range s.k {
						var amax float64
						for _, v := range xr[p/32*32 : p/32*32+32] {
							amax = max(amax, math.Abs(float64(v)))
						}
						wp := math.Abs(float64(wq[j*s.k+p]))
						q16 += wp * amax / 65534
						mag += wp * math.Abs(float64(xr[p]))
					}
					tol[i*s.n+j] = math.Abs(float64(sc.alpha)) * (q16 + 2*float64(s.k)*0x1p-24*mag)
				}
			}
			k.near(what, dst, hdst, 1e-6, tol)
		}
	}
	q := k.b.Alloc(api.Q8_0, 2, 32)
	f := func(shape ...int) api.Tensor { return k.b.Alloc(api.F32, shape...) }
	panicsWith(t, "Q8_0 as the untransposed operand", api.ErrDType, func() { k.b.MatMul(f(3, 32), f(3, 2), q, false, false, 1, 0) })
	panicsWith(t, "Q8_0 with a wrong inner size", api.ErrShape, func() { k.b.MatMul(f(3, 2), f(3, 31), q, false, true, 1, 0) })
	panicsWith(t, "BF16 as the first operand", api.ErrDType, func() {
		k.b.MatMul(f(2, 2), f(2, 3), k.b.Alloc(api.BF16, 2, 3), true, true, 1, 0)
	})
}

// TestConvertI64I32 checks ds_convert_i64_i32: values in int32's range
// exact (both ends), a value outside raised as api.ErrOutOfRange naming
// it, no elements; and that a pair of dtypes no backend converts is
// api.ErrUnsupported without a host round-trip.
func TestConvertI64I32(t *testing.T) {
	k := newKCheck(t, 5)
	i64 := func(v ...int64) api.Tensor {
		raw := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
		}
		s := k.b.Alloc(api.I64, len(v))
		k.b.Upload(s, raw)
		return s
	}
	in := []int64{0, 1, -1, math.MaxInt32, math.MinInt32, 123456789, -987654321}
	for i := range 300 { // more than a block of threads
		in = append(in, int64(k.rng.Int32())-int64(i))
	}
	dst := k.b.Alloc(api.I32, len(in))
	k.run("Convert I64 to I32", "ds_convert_i64_i32", 1, func() { k.b.Convert(dst, i64(in...)) })
	raw := rawOf(dst)
	for i, v := range in {
		if got := int32(binary.LittleEndian.Uint32(raw[4*i:])); int64(got) != v {
			t.Fatalf("Convert I64 to I32: element %d is %d, want %d", i, got, v)
		}
	}
	for _, bad := range []int64{math.MaxInt32 + 1, math.MinInt32 - 1, math.MaxInt64, math.MinInt64} {
		k.run(fmt.Sprint("Convert I64 ", bad), "ds_convert_i64_i32", 1, func() {
			err, _ := catch(func() { k.b.Convert(k.b.Alloc(api.I32, 4), i64(5, -3, bad, 7)) }).(error)
			if !errors.Is(err, api.ErrOutOfRange) || !strings.Contains(err.Error(), fmt.Sprint(bad)) {
				t.Errorf("Convert I64 %d to I32: %v, want api.ErrOutOfRange naming the value", bad, err)
			}
		})
	}
	k.run("Convert I64 to I32, no elements", "ds_convert_i64_i32", 0, func() { k.b.Convert(k.b.Alloc(api.I32, 0), k.b.Alloc(api.I64, 0)) })
	k.run("Convert F16 to BF16", "ds_convert_f16_f32", 0, func() {
		panicsWith(t, "Convert F16 to BF16", api.ErrUnsupported, func() { k.b.Convert(k.b.Alloc(api.BF16, 3), k.b.Alloc(api.F16, 3)) })
	})
}
