package eval

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// nllReference is nll as first written, with math.Exp: the reference
// for TestNLL and BenchmarkNLL.
func nllReference(row []float32, target int32) float64 {
	mx := math.Inf(-1)
	for _, x := range row {
		mx = max(mx, float64(x))
	}
	var s float64
	for _, x := range row {
		s += math.Exp(float64(x) - mx)
	}
	return math.Log(s) - (float64(row[target]) - mx)
}

// expExact returns e^x for finite x to about 100 bits: the Taylor series
// of e^(x/2^16) (|x/2^16| < 0.012, so 16 terms leave less than 2^-150),
// squared 16 times.
func expExact(x float64) *big.Float {
	const prec = 128
	y := new(big.Float).SetPrec(prec).SetMantExp(big.NewFloat(x), -16)
	sum := new(big.Float).SetPrec(prec).SetInt64(1)
	term := new(big.Float).SetPrec(prec).SetInt64(1)
	for n := range 16 {
		term.Quo(term.Mul(term, y), big.NewFloat(float64(n+1)))
		sum.Add(sum, term)
	}
	for range 16 {
		sum.Mul(sum, sum)
	}
	return sum
}

// TestExpNonPositive checks expNonPositive against the exact e^x: relative
// error at most 1.2e-16 (0.54·2^-52, barely more than the 2^-53 of correct
// rounding) where e^x is a normal float64, at most 2^-1074 (one subnormal
// ulp) below that. It also checks it against math.Exp on a dense sweep of
// [-750, 0] at 5e-16 relative (math.Exp itself is off by up to about 1.5
// ulp), and the edge values.
func TestExpNonPositive(t *testing.T) {
	const tolExact, tolExp = 1.2e-16, 5e-16
	r := rand.New(rand.NewPCG(1, 2))
	xs := []float64{0, math.Copysign(0, -1), -5e-324, -1e-300, -0x1p-54, -0x1p-53, -1e-10,
		-math.Ln2 / 256, -math.Ln2 / 2, -math.Ln2, -1, -708.3964185322641, -708.4, -708.8,
		-745.1332191019411, -745.13, -745, -744.5, -740}
	for range 5000 {
		xs = append(xs, -r.Float64(), -r.Float64()*745.2)
	}
	for _, x := range xs {
		got := expNonPositive(x)
		want := expExact(x)
		w, _ := want.Float64()
		if w < 0x1p-1022 {
			if math.Abs(got-w) > 0x1p-1074 {
				t.Errorf("expNonPositive(%v) = %g, want %g", x, got, w)
			}
			continue
		}
		rel, _ := new(big.Float).Quo(new(big.Float).Sub(big.NewFloat(got), want), want).Float64()
		if math.Abs(rel) > tolExact {
			t.Errorf("expNonPositive(%v) = %.17g, want %.17g: relative error %.3g", x, got, w, rel)
		}
	}
	for i := range 7_500_001 {
		x := -750 * float64(i) / 7_500_000
		got, want := expNonPositive(x), math.Exp(x)
		if math.Abs(got-want) > tolExp*want && math.Abs(got-want) > 0x1p-1074 {
			t.Fatalf("expNonPositive(%v) = %.17g, math.Exp %.17g", x, got, want)
		}
	}
	if got := expNonPositive(-745.2); got != 0 {
		t.Errorf("expNonPositive(-745.2) = %v, want 0", got)
	}
	if got := expNonPositive(math.Inf(-1)); got != 0 {
		t.Errorf("expNonPositive(-Inf) = %v, want 0", got)
	}
	if got := expNonPositive(math.NaN()); !math.IsNaN(got) {
		t.Errorf("expNonPositive(NaN) = %v, want NaN", got)
	}
}

// TestNLL checks nll against nllReference (1e-12, relative above 1) on
// random rows of several widths: moderate logits, logits spread over
// thousands (so that most terms underflow), and rows with infinities and
// NaNs, where both must give the same infinity or NaN.
func TestNLL(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, V := range []int{1, 2, 7, 100, 4096} {
		for i := range 60 {
			row := make([]float32, V)
			scale, offset := []float64{0.01, 3, 30, 3000}[i%4], 100*r.NormFloat64()
			for j := range row {
				row[j] = float32(offset + scale*r.NormFloat64())
			}
			if i%3 == 2 {
				row[r.IntN(V)] = []float32{nan, inf, -inf, -inf}[i/3%4]
			}
			target := int32(r.IntN(V))
			got, want := nll(row, target), nllReference(row, target)
			switch {
			case math.IsNaN(want) || math.IsInf(want, 0):
				if got != want && !(math.IsNaN(got) && math.IsNaN(want)) {
					t.Errorf("V %d, row %d: nll %v, reference %v", V, i, got, want)
				}
			case math.Abs(got-want) > 1e-12*max(1, math.Abs(want)):
				t.Errorf("V %d, row %d: nll %.17g, reference %.17g", V, i, got, want)
			}
		}
	}
	if got := nll([]float32{-inf, -inf}, 0); !math.IsNaN(got) {
		t.Errorf("nll of a row of -Inf: %v, want NaN", got)
	}
	if got := nll([]float32{0, -inf}, 1); !math.IsInf(got, 1) {
		t.Errorf("nll of a target of -Inf: %v, want +Inf", got)
	}
}

// BenchmarkNLL times nll and nllReference on 256 rows of 4096 logits,
// reporting ns/row.
func BenchmarkNLL(b *testing.B) {
	const rows, V = 256, 4096
	r := rand.New(rand.NewPCG(5, 6))
	logits := make([]float32, rows*V)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 3)
	}
	for _, f := range []struct {
		name string
		nll  func([]float32, int32) float64
	}{{"nll", nll}, {"nllReference", nllReference}} {
		b.Run(f.name, func(b *testing.B) {
			var s float64
			for b.Loop() {
				for i := range rows {
					s += f.nll(logits[i*V:(i+1)*V], int32(i))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			if math.IsNaN(s) {
				b.Fatal("NaN")
			}
		})
	}
}
