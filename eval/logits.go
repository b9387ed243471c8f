package eval

import (
	"fmt"
	"math"
	"math/big"
	"sync"

	"github.com/densessm/densessm/api"
)

// hostLogits returns the elements of logits [1,T,V] as float32s, the
// backend's own storage when it gives host access to it (no copy).
func hostLogits(t api.Tensor, T, V int) (_ []float32, err error) {
	defer api.Recover(&err)
	if want := (api.Shape{1, T, V}); !t.Shape().Equal(want) {
		return nil, fmt.Errorf("logits of shape %v, want %v: %w", t.Shape(), want, api.ErrShape)
	}
	if t.DType() != api.F32 {
		return nil, fmt.Errorf("logits of dtype %s, want %s: %w", t.DType(), api.F32, api.ErrDType)
	}
	if h, ok := t.(api.HostFloat32s); ok {
		return h.HostFloat32s(), nil
	}
	return api.Float32s(t), nil
}

// nll returns -log softmax(row)[target], computed in float64. Logits that
// are not finite give NaN or an infinity.
func nll(row []float32, target int32) float64 {
	// The max is exact in float32. A NaN is passed over here, but its own
	// term, and so the sum, is NaN.
	m := float32(math.Inf(-1))
	for _, x := range row {
		if x > m {
			m = x
		}
	}
	mx := float64(m)
	var s float64
	for _, x := range row {
		s += expNonPositive(float64(x) - mx)
	}
	return math.Log(s) - (float64(row[target]) - mx)
}

// expBits is log2 of the number of table entries per octave in
// expNonPositive.
const expBits = 7

// exp2Table[j] is 2^(j/2^expBits) as the unevaluated sum of two float64s,
// hi+lo, good to about 2^-106 (computed once, with math/big).
var exp2Table = func() (t [1 << expBits][2]float64) {
	step := new(big.Float).SetPrec(128).SetInt64(2)
	for range expBits {
		step.Sqrt(step)
	}
	v := new(big.Float).SetPrec(128).SetInt64(1)
	for j := range t {
		hi, _ := v.Float64()
		lo, _ := new(big.Float).Sub(v, big.NewFloat(hi)).Float64()
		t[j] = [2]float64{hi, lo}
		v.Mul(v, step)
	}
	return t
}()

// expNonPositive returns e^x for x ≤ 0 with a relative error below 1.2e-16,
// about 0.51 ulp, where math.Exp is off by up to about 1.5 ulp on amd64 and
// takes about three times as long. Results below the smallest normal
// float64 are subnormal, rounded twice; below about -745.13, where e^x
// rounds to 0, it returns 0, as it does for -Inf. NaN gives NaN.
func expNonPositive(x float64) float64 {
	const (
		n = 1 << expBits
		// ln2Hi+ln2Lo is ln 2/n; ln2Hi has 32 significant bits, so that
		// k·ln2Hi is exact for the k here, |k| < 2^18.
		ln2Hi = 6.93147180369123816490e-01 / n
		ln2Lo = 1.90821492927058770002e-10 / n
		// underflow is math.Exp's bound: ln 2^-1075.
		underflow = -7.45133219101941108420e+02
		// Adding and then subtracting round rounds to the nearest
		// integer (below 2^51 in magnitude).
		round = 0x1.8p52
	)
	if !(x >= underflow) {
		if math.IsNaN(x) {
			return x
		}
		return 0
	}
	// x = k·ln 2/n + r with |r| at most about ln 2/2n, so that
	// e^x = 2^(k/n)·e^r, and with k = n·e + j, 2^(k/n) = 2^e·2^(j/n).
	kf := x*(n/math.Ln2) + round - round
	k := int(kf)
	r := x - kf*ln2Hi - kf*ln2Lo
	// e^r - 1 by its Taylor series, whose next term is below 2^-60.
	r2 := r * r
	q := r + r2*(1.0/2+r*(1.0/6)+r2*(1.0/24+r*(1.0/120)))
	t := &exp2Table[k&(n-1)]
	y := t[0] + (t[1] + t[0]*q) // 2^(j/n)·e^r, in [0.99, 2)
	e := k >> expBits
	if e < -1022 {
		return math.Ldexp(y, e)
	}
	return y * math.Float64frombits(uint64(e+1023)<<52)
}

// parallelRows is the least work, in logits, worth a goroutine.
const parallelRows = 1 << 16

// rowsNLL sets out[i] to nll of row i of logits (rows of V floats) and
// targets[i], splitting the rows over up to workers goroutines. Each value
// is computed alone, so the result does not depend on the split.
func rowsNLL(logits []float32, V int, targets []int32, out []float64, workers int) {
	n := len(targets)
	workers = max(1, min(workers, n*V/parallelRows))
	run := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = nll(logits[i*V:(i+1)*V], targets[i])
		}
	}
	if workers == 1 {
		run(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { run(w*n/workers, (w+1)*n/workers) })
	}
	wg.Wait()
}

// argmax returns the index of the first largest value of row (0 when every
// value is NaN).
func argmax(row []float32) int {
	best := 0
	for i, x := range row {
		if x > row[best] || (row[best] != row[best] && x == x) {
			best = i
		}
	}
	return best
}

// sum is a compensated (Neumaier) sum of float64s, accurate over the
// millions of terms of a long stream; the same terms in the same order
// give the same bits.
type sum struct{ s, c float64 }

// add adds x.
func (k *sum) add(x float64) {
	t := k.s + x
	if math.Abs(k.s) >= math.Abs(x) {
		k.c += (k.s - t) + x
	} else {
		k.c += (x - t) + k.s
	}
	k.s = t
}

// value returns the sum (NaN or an infinity when a term was one).
func (k *sum) value() float64 {
	if math.IsInf(k.s, 0) || math.IsNaN(k.s) {
		return k.s
	}
	return k.s + k.c
}
