package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	register("RMSNorm", testRMSNorm)
	register("RMSNormGrad", testRMSNormGrad)
	register("Softmax", testSoftmax)
	register("SoftmaxGrad", testSoftmaxGrad)
	register("CrossEntropy", testCrossEntropy)
}

// refRMSNorm normalises each row of d values of x: x * rsqrt(mean(x^2) +
// eps) * w, with w nil for no weight.
func refRMSNorm(x, w []float64, d int, eps float64) []float64 {
	y := make([]float64, len(x))
	for r := 0; r < len(x); r += d {
		var ss float64
		for _, v := range x[r : r+d] {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(d)+eps)
		for j := range d {
			y[r+j] = x[r+j] * inv
			if w != nil {
				y[r+j] *= w[j]
			}
		}
	}
	return y
}

// rmsCase is a shape [..., D] with or without weight.
type rmsCase struct {
	shape  []int
	weight bool
	eps    float32
}

var rmsCases = []rmsCase{
	{[]int{3, 7}, true, 1e-5},
	{[]int{2, 3, 16}, false, 1e-6},
	{[]int{1, 1}, true, 1e-5},
	{[]int{5, 1}, false, 1e-5},
	{[]int{0, 5}, true, 1e-5},
	{[]int{9}, true, 1e-6},
	{[]int{33, 257}, true, 1e-5},
	{[]int{4, 19}, false, 1e-5},
}

// rmsInputs draws x and a weight; with special, one row is all zero and
// one holds large values, when there are enough rows.
func rmsInputs(seed uint64, c rmsCase, special bool) (x, w []float64) {
	r := newRand(seed)
	d := c.shape[len(c.shape)-1]
	x = randVals(r, numel(c.shape), -2, 2)
	if rows := len(x) / max(d, 1); special && rows >= 3 {
		clear(x[:d])
		for j := range d {
			x[d+j] *= 1e3
		}
	}
	if c.weight {
		w = f32(randVals(r, d, -1.5, 1.5))
	}
	return f32(x), w
}

func testRMSNorm(t *testing.T, b api.Backend) {
	for i, c := range rmsCases {
		runSub(t, fmt.Sprintf("%s/weight=%v", shapeName(c.shape), c.weight), func(t *testing.T) {
			x, w := rmsInputs(uint64(60+i), c, true)
			d := c.shape[len(c.shape)-1]
			want := refRMSNorm(x, w, d, float64(c.eps))
			var wt api.Tensor
			if w != nil {
				wt = upload(b, w, d)
			}
			dst := upload(b, filled(len(x), math.NaN()), c.shape...)
			b.RMSNorm(dst, upload(b, x, c.shape...), wt, c.eps)
			checkRows(t, "rmsnorm", download(dst), want, d, RelTol)
		})
	}
}

func testRMSNormGrad(t *testing.T, b api.Backend) {
	for i, c := range rmsCases {
		if numel(c.shape) > 1000 {
			continue // finite differences on the large case would be slow
		}
		if c.shape[len(c.shape)-1] == 1 {
			// With D = 1 the gradient is g*eps/(x^2+eps)^1.5, which every
			// float32 formula gets as a difference of two nearly equal
			// numbers: it is ill-conditioned, not a kernel property.
			continue
		}
		runSub(t, fmt.Sprintf("%s/weight=%v", shapeName(c.shape), c.weight), func(t *testing.T) {
			x, w := rmsInputs(uint64(70+i), c, false)
			d := c.shape[len(c.shape)-1]
			eps := float64(c.eps)
			dy := f32(randVals(newRand(uint64(i)), len(x), -1, 1))
			in, skip := [][]float64{x, w}, []int(nil)
			if w == nil {
				skip = []int{1}
			}
			want := numericGrad(func(in [][]float64) []float64 { return refRMSNorm(in[0], in[1], d, eps) }, in, dy, skip...)

			xt, dyt := upload(b, x, c.shape...), upload(b, dy, c.shape...)
			var wt, dw api.Tensor
			if w != nil {
				wt = upload(b, w, d)
				dw = upload(b, filled(d, math.NaN()), d)
			}
			dx := upload(b, filled(len(x), math.NaN()), c.shape...)
			b.RMSNormGrad(dx, dw, xt, wt, dyt, c.eps)
			checkRel(t, "dx", download(dx), want[0], GradTol)
			if w == nil {
				return
			}
			checkRel(t, "dw", download(dw), want[1], GradTol)
			// Either gradient alone.
			dx2 := b.Alloc(api.F32, c.shape...)
			b.RMSNormGrad(dx2, nil, xt, wt, dyt, c.eps)
			checkRel(t, "dx without dw", download(dx2), want[0], GradTol)
			dw2 := b.Alloc(api.F32, d)
			b.RMSNormGrad(nil, dw2, xt, wt, dyt, c.eps)
			checkRel(t, "dw without dx", download(dw2), want[1], GradTol)
		})
	}
}

// refSoftmax computes softmax (or log-softmax) over rows of d values, in a
// numerically stable way.
func refSoftmax(x []float64, d int, log bool) []float64 {
	y := make([]float64, len(x))
	for r := 0; r < len(x); r += d {
		row := x[r : r+d]
		m := math.Inf(-1)
		for _, v := range row {
			m = max(m, v)
		}
		var s float64
		for _, v := range row {
			s += math.Exp(v - m)
		}
		for j, v := range row {
			if log {
				y[r+j] = v - m - math.Log(s)
			} else {
				y[r+j] = math.Exp(v-m) / s
			}
		}
	}
	return y
}

// softmaxShapes are the [..., D] shapes of the softmax groups.
var softmaxShapes = [][]int{{4, 9}, {2, 3, 17}, {1, 1}, {3, 1}, {0, 5}, {16, 1000}}

// softmaxInputs draws logits; with enough rows, one row holds ±1e4 (the
// naive exp overflows) and one is constant.
func softmaxInputs(seed uint64, shape []int) []float64 {
	x := randVals(newRand(seed), numel(shape), -5, 5)
	d := shape[len(shape)-1]
	if len(x)/d >= 3 && d >= 3 {
		x[0], x[1], x[2] = 1e4, 1e4-1.5, -1e4
		for j := range d {
			x[d+j] = 7
		}
	}
	return f32(x)
}

func testSoftmax(t *testing.T, b api.Backend) {
	for i, shape := range softmaxShapes {
		for _, log := range []bool{false, true} {
			runSub(t, fmt.Sprintf("%s/log=%v", shapeName(shape), log), func(t *testing.T) {
				x := softmaxInputs(uint64(80+i), shape)
				want := refSoftmax(x, shape[len(shape)-1], log)
				dst := upload(b, filled(len(x), math.NaN()), shape...)
				if log {
					b.LogSoftmax(dst, upload(b, x, shape...))
				} else {
					b.Softmax(dst, upload(b, x, shape...))
				}
				checkRows(t, "softmax", download(dst), want, shape[len(shape)-1], RelTol)
			})
		}
	}
}

func testSoftmaxGrad(t *testing.T, b api.Backend) {
	for i, shape := range softmaxShapes {
		if numel(shape) > 1000 {
			continue // finite differences on the large case would be slow
		}
		for _, log := range []bool{false, true} {
			runSub(t, fmt.Sprintf("%s/log=%v", shapeName(shape), log), func(t *testing.T) {
				d := shape[len(shape)-1]
				x := f32(randVals(newRand(uint64(90+i)), numel(shape), -3, 3))
				dy := f32(randVals(newRand(uint64(95+i)), len(x), -1, 1))
				want := numericGrad(func(in [][]float64) []float64 { return refSoftmax(in[0], d, log) }, [][]float64{x}, dy)
				y := upload(b, refSoftmax(x, d, log), shape...)
				dx := upload(b, filled(len(x), math.NaN()), shape...)
				if log {
					b.LogSoftmaxGrad(dx, y, upload(b, dy, shape...))
				} else {
					b.SoftmaxGrad(dx, y, upload(b, dy, shape...))
				}
				checkRel(t, "dx", download(dx), want[0], GradTol)
			})
		}
	}
}

// refCrossEntropy returns the per-row loss and its gradient for logits
// [N,V]; rows whose target is ignore get 0 for both.
func refCrossEntropy(logits []float64, targets []int32, v int, ignore int32) (loss, dlogits []float64) {
	loss = make([]float64, len(targets))
	dlogits = make([]float64, len(logits))
	lsm := refSoftmax(logits, v, true)
	for n, tg := range targets {
		if tg == ignore {
			continue
		}
		loss[n] = -lsm[n*v+int(tg)]
		for j := range v {
			dlogits[n*v+j] = math.Exp(lsm[n*v+j])
		}
		dlogits[n*v+int(tg)]--
	}
	return loss, dlogits
}

func testCrossEntropy(t *testing.T, b api.Backend) {
	cases := []struct {
		n, v    int
		ignore  int32
		targets []int32
	}{
		{4, 7, api.IgnoreIndex, []int32{3, 0, api.IgnoreIndex, 6}},
		{5, 1, api.IgnoreIndex, []int32{0, 0, api.IgnoreIndex, 0, 0}},
		{3, 5, 2, []int32{2, 4, 1}}, // an ignore index inside [0,V)
		{0, 4, api.IgnoreIndex, nil},
		{2, 3, api.IgnoreIndex, []int32{api.IgnoreIndex, api.IgnoreIndex}},
		{37, 301, api.IgnoreIndex, nil}, // random targets
	}
	for i, c := range cases {
		runSub(t, fmt.Sprintf("%dx%d", c.n, c.v), func(t *testing.T) {
			r := newRand(uint64(110 + i))
			targets := c.targets
			if targets == nil {
				for range c.n {
					targets = append(targets, int32(r.IntN(c.v)))
				}
			}
			logits := f32(randVals(r, c.n*c.v, -4, 4))
			wantLoss, wantGrad := refCrossEntropy(logits, targets, c.v, c.ignore)
			lt, tt := upload(b, logits, c.n, c.v), uploadIDs(b, targets, c.n)
			loss := upload(b, filled(c.n, math.NaN()), c.n)
			dl := upload(b, filled(len(logits), math.NaN()), c.n, c.v)
			b.CrossEntropy(loss, dl, lt, tt, c.ignore)
			checkRel(t, "loss", download(loss), wantLoss, RelTol)
			checkRows(t, "dlogits", download(dl), wantGrad, c.v, RelTol)

			loss2 := upload(b, filled(c.n, math.NaN()), c.n)
			b.CrossEntropy(loss2, nil, lt, tt, c.ignore)
			checkRel(t, "loss without dlogits", download(loss2), wantLoss, RelTol)

			if len(logits) <= 100 {
				fd := numericGrad(func(in [][]float64) []float64 {
					l, _ := refCrossEntropy(in[0], targets, c.v, c.ignore)
					return l
				}, [][]float64{logits}, filled(c.n, 1))
				checkRel(t, "dlogits against finite differences", download(dl), fd[0], GradTol)
			}
		})
	}
	// Logits of ±1e4: exp overflows float32 unless the kernel subtracts the
	// row maximum, and a loss of order 1 must not be computed as the
	// difference of two numbers of order 1e4 (logsumexp - logit), which
	// would leave only about three correct digits. Huge losses are checked
	// apart, so that their scale does not hide the small ones' errors.
	for _, c := range []struct {
		name    string
		logits  []float64
		targets []int32
	}{
		{"large_logits/small_loss", []float64{
			1e4, -1e4, 0, 1e4 - 2,
			-1e4, -1e4, -1e4 + 1, -1e4,
			1e4, 1e4, 1e4, 1e4,
		}, []int32{0, 1, 3}},
		{"large_logits/large_loss", []float64{
			1e4, -1e4, 0, 1,
			-1e4, 1e4, 1e4, -1e4,
		}, []int32{1, 0}},
	} {
		runSub(t, c.name, func(t *testing.T) {
			const v = 4
			n := len(c.targets)
			wantLoss, wantGrad := refCrossEntropy(c.logits, c.targets, v, api.IgnoreIndex)
			loss, dl := b.Alloc(api.F32, n), b.Alloc(api.F32, n, v)
			b.CrossEntropy(loss, dl, upload(b, c.logits, n, v), uploadIDs(b, c.targets, n), api.IgnoreIndex)
			checkRel(t, "loss", download(loss), wantLoss, RelTol)
			checkRows(t, "dlogits", download(dl), wantGrad, v, RelTol)
		})
	}
}
