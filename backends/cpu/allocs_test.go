//go:build !race

package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// allocCase is one kernel call whose allocations are measured.
type allocCase struct {
	name string
	call func()
}

// decodeCases returns calls of the kernels of the decode path on b, with
// their outputs allocated beforehand: with the shapes of a Mamba decode
// step of two sequences (d_model 768, d_inner 1536, d_state 16, conv width
// 4), and "wide" ones large enough that two threads split them.
func decodeCases(b *Backend) []allocCase {
	r := rand.New(rand.NewPCG(11, 12))
	rnd := func(lo, hi float64, shape ...int) *Tensor { return randT(b, r, lo, hi, shape...) }
	out := func(shape ...int) *Tensor { return b.Alloc(api.F32, shape...).(*Tensor) }
	const B, D, E, N, K, V = 2, 768, 1536, 16, 4, 1000

	table := rnd(-1, 1, V, D)
	ids := api.FromInt32s(b, []int32{3, 999}, B)
	wideIDs := api.FromInt32s(b, make([]int32, 64), B, 32)
	h, hRow, wide := rnd(-1, 1, B, 1, D), rnd(-1, 1, 1, D), rnd(-1, 1, 64, D)
	outD, outWide := out(B, 1, D), out(64, D)
	normW, vecD, one := rnd(0.5, 1.5, D), rnd(-1, 1, D), rnd(1, 2, 1)
	xz, xzWide := rnd(-1, 1, B, 2*E), rnd(-1, 1, 64, 2*E)
	x, xWide := rnd(-1, 1, B, 1, E), rnd(-1, 1, B, 16384)
	outE, outEWide := out(B, 1, E), out(B, 16384)
	conv, shift := rnd(-1, 1, B, K-1, E), out(B, K-2, E)
	convW, convB := rnd(-1, 1, E, K), rnd(-1, 1, E)
	convX, convOut := rnd(-1, 1, B, 64, E), out(B, 64, E)
	wOut, wIn := rnd(-1, 1, 2*E, D), rnd(-1, 1, D, 2*E)
	col, outRow, outCol := rnd(-1, 1, D, 1), out(1, 2*E), out(2*E, 1)
	scan := api.ScanArgs{
		X: x, Delta: rnd(0, 0.5, B, 1, E), A: rnd(-2, -0.1, E, N),
		Bm: rnd(-1, 1, B, 1, N), Cm: rnd(-1, 1, B, 1, N), D: rnd(-1, 1, E),
		H0: rnd(-1, 1, B, E, N), Inject: rnd(-1, 1, B, 1, E, N),
	}
	plainScan := api.ScanArgs{X: scan.X, Delta: scan.Delta, A: scan.A, Bm: scan.Bm, Cm: scan.Cm}
	hT, hs := out(B, E, N), out(B, 1, E, N)
	gate4, inject := rnd(0, 1, B, 1, E, 1), rnd(-1, 1, B, 1, E, N)
	logits, wideLogits := rnd(-5, 5, B, V), rnd(-5, 5, B, 50280)
	probs, wideProbs, loss := out(B, V), out(B, 50280), out(B)
	targets := api.FromInt32s(b, []int32{7, -100}, B)
	gathered, gatheredWide := out(B, D), out(B, 32, D)
	sliced, out2E := out(64, E), out(B, E)
	lowW := map[api.DType]*Tensor{}
	for _, d := range []api.DType{api.BF16, api.Q8_0} {
		lowW[d] = b.Alloc(d, 2*E, D).(*Tensor)
		b.Convert(lowW[d], wOut)
	}
	hB := rnd(-1, 1, B, D)
	outB2E := out(B, 2*E)

	cases := []allocCase{
		{"gather", func() { b.Gather(gathered, table, ids) }},
		{"gather/wide", func() { b.Gather(gatheredWide, table, wideIDs) }},
		{"rmsnorm", func() { b.RMSNorm(outD, h, normW, 1e-5) }},
		{"rmsnorm/noweight", func() { b.RMSNorm(outD, h, nil, 1e-5) }},
		{"rmsnorm/wide", func() { b.RMSNorm(outWide, wide, normW, 1e-5) }},
		{"matmul/row", func() { b.MatMul(outRow, hRow, wOut, false, true, 1, 0) }},
		{"matmul/rowtransposed", func() { b.MatMul(outRow, hRow, wIn, false, false, 1, 0.5) }},
		{"matmul/column", func() { b.MatMul(outCol, wOut, col, false, false, 1, 0) }},
		{"affine", func() { b.Affine(outE, x, 0.5, 1) }},
		{"affine/wide", func() { b.Affine(outEWide, xWide, 0.5, 1) }},
		{"binary/same", func() { b.Binary(api.OpAdd, outD, h, h) }},
		{"binary/row", func() { b.Binary(api.OpAdd, outD, h, vecD) }},
		{"binary/scalar", func() { b.Binary(api.OpDiv, outD, h, one) }},
		{"binary/gate", func() { b.Binary(api.OpMul, hs, gate4, inject) }},
		{"binary/wide", func() { b.Binary(api.OpSub, outWide, wide, vecD) }},
		{"slice", func() { b.Slice(out2E, xz, 1, E) }},
		{"slice/wide", func() { b.Slice(sliced, xzWide, 1, 0) }},
		{"setslice", func() { b.Slice(shift, conv, 1, 1); b.SetSlice(conv, shift, 1, 0) }},
		{"conv", func() { b.CausalConv1d(outE, x, convW, convB, conv) }},
		{"conv/zeros", func() { b.CausalConv1d(outE, x, convW, nil, nil) }},
		{"conv/wide", func() { b.CausalConv1d(convOut, convX, convW, convB, conv) }},
		{"scan", func() { b.SelectiveScan(outE, hT, hs, scan) }},
		{"scan/plain", func() { b.SelectiveScan(outE, nil, nil, plainScan) }},
		{"copy", func() { b.Copy(outD, h) }},
		{"softmax", func() { b.Softmax(probs, logits) }},
		{"softmax/wide", func() { b.Softmax(wideProbs, wideLogits) }},
		{"logsoftmax", func() { b.LogSoftmax(probs, logits) }},
		{"crossentropy", func() { b.CrossEntropy(loss, probs, logits, targets, -100) }},
		{"crossentropy/lossonly", func() { b.CrossEntropy(loss, nil, logits, targets, -100) }},
	}
	for d, w := range lowW {
		cases = append(cases,
			allocCase{"matmul/row/" + d.String(), func() { b.MatMul(outRow, hRow, w, false, true, 1, 0) }},
			allocCase{"matmul/batch/" + d.String(), func() { b.MatMul(outB2E, hB, w, false, true, 1, 0) }},
			allocCase{"gather/" + d.String(), func() { b.Gather(gathered, w, ids) }})
	}
	for _, op := range api.UnaryOps() {
		cases = append(cases,
			allocCase{"unary/" + op.String(), func() { b.Unary(op, outE, x) }},
			allocCase{"unary/wide/" + op.String(), func() { b.Unary(op, outEWide, xWide) }})
	}
	return cases
}

// TestDecodeKernelsAllocateNothing checks that each kernel of the decode
// path allocates nothing once warm, at one and two threads. (This file is
// left out of race-detector builds, whose sync.Pool drops recycled values
// at random.)
func TestDecodeKernelsAllocateNothing(t *testing.T) {
	for _, threads := range []int{1, 2} {
		b := New(api.BackendOptions{Threads: threads})
		for _, c := range decodeCases(b) {
			t.Run(fmt.Sprintf("threads=%d/%s", threads, c.name), func(t *testing.T) {
				for range 5 { // the warm-up fills the pools
					c.call()
				}
				if n := testing.AllocsPerRun(50, c.call); n != 0 {
					t.Errorf("%.1f allocations per call", n)
				}
			})
		}
	}
}
