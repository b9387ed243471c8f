package nn

import (
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

// Each op's gradient, through Backward, against finite differences of a
// weighted sum of its output (see helpers_test.go for step and tolerance).

func TestBinaryGrad(t *testing.T) {
	b := newBackend()
	pairs := []struct {
		name   string
		sa, sb []int
	}{
		{"same", []int{2, 3, 4}, []int{2, 3, 4}},
		{"row", []int{2, 3, 4}, []int{4}},
		{"column", []int{2, 3, 4}, []int{3, 1}},
		{"both", []int{3, 1}, []int{2, 1, 4}},
	}
	for _, op := range api.BinaryOps() {
		for _, p := range pairs {
			t.Run(op.String()+"/"+p.name, func(t *testing.T) {
				r := newRand(uint64(op))
				x := leaf(b, r, -1, 1, p.sa...)
				y := leaf(b, r, 0.5, 1.5, p.sb...) // away from 0 for Div
				shape, _ := api.BroadcastShapes(p.sa, p.sb)
				w := constant(b, r, shape...)
				checkGrads(t, b, []named{{"a", x}, {"b", y}}, opTol, func(tp *Tape) *Var {
					return weightedSum(tp, tp.binary(op, x, y), w)
				})
			})
		}
	}
}

func TestUnaryGrad(t *testing.T) {
	b := newBackend()
	for _, op := range api.UnaryOps() {
		t.Run(op.String(), func(t *testing.T) {
			r := newRand(uint64(op))
			var x *Var
			switch op {
			case api.OpLog, api.OpSqrt, api.OpRsqrt:
				x = leaf(b, r, 0.5, 2, 3, 5)
			case api.OpAbs, api.OpRelu:
				x = NewVar(awayFromZero(b, r, 3, 5), true)
			default:
				x = leaf(b, r, -2, 2, 3, 5)
			}
			w := constant(b, r, 3, 5)
			checkGrads(t, b, []named{{"x", x}}, opTol, func(tp *Tape) *Var {
				return weightedSum(tp, tp.Unary(op, x), w)
			})
		})
	}
}

func TestAffineSumMeanGrad(t *testing.T) {
	b := newBackend()
	r := newRand(1)
	x := leaf(b, r, -1, 1, 2, 3, 4)
	w := constant(b, r, 3, 1)
	checkGrads(t, b, []named{{"x", x}}, opTol, func(tp *Tape) *Var {
		a := tp.Affine(x, -1.5, 0.25)              // [2,3,4]
		s := weightedSum(tp, tp.SumTo(a, 3, 1), w) // sum over axes 0 and 2
		return tp.Add(s, tp.Mean(tp.Unary(api.OpSquare, x)))
	})
}

func TestMatMulGrad(t *testing.T) {
	b := newBackend()
	// m, k, n = 3, 4, 5; batch 2. Shapes of a and b as stored.
	aShape := func(batch []int, trans bool) []int {
		if trans {
			return append(append([]int{}, batch...), 4, 3)
		}
		return append(append([]int{}, batch...), 3, 4)
	}
	bShape := func(batch []int, trans bool) []int {
		if trans {
			return append(append([]int{}, batch...), 5, 4)
		}
		return append(append([]int{}, batch...), 4, 5)
	}
	batches := []struct {
		name   string
		ba, bb []int
	}{
		{"plain", nil, nil},
		{"batched", []int{2}, []int{2}},
		{"shared-a", nil, []int{2}},
		{"shared-b", []int{2}, nil},
	}
	for _, bt := range batches {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				t.Run(label("%s/transA=%v/transB=%v", bt.name, ta, tb), func(t *testing.T) {
					r := newRand(7)
					x := leaf(b, r, -1, 1, aShape(bt.ba, ta)...)
					y := leaf(b, r, -1, 1, bShape(bt.bb, tb)...)
					outBatch := bt.ba
					if outBatch == nil {
						outBatch = bt.bb
					}
					w := constant(b, r, append(append([]int{}, outBatch...), 3, 5)...)
					checkGrads(t, b, []named{{"a", x}, {"b", y}}, opTol, func(tp *Tape) *Var {
						return weightedSum(tp, tp.MatMul(x, y, ta, tb), w)
					})
				})
			}
		}
	}
}

func TestLinearGrad(t *testing.T) {
	b := newBackend()
	for _, withBias := range []bool{false, true} {
		t.Run(label("bias=%v", withBias), func(t *testing.T) {
			r := newRand(3)
			x := leaf(b, r, -1, 1, 2, 3, 4)
			wt := leaf(b, r, -1, 1, 5, 4)
			vars := []named{{"x", x}, {"weight", wt}}
			var bias *Var
			if withBias {
				bias = leaf(b, r, -1, 1, 5)
				vars = append(vars, named{"bias", bias})
			}
			w := constant(b, r, 2, 3, 5)
			checkGrads(t, b, vars, opTol, func(tp *Tape) *Var {
				return weightedSum(tp, tp.Linear(x, wt, bias), w)
			})
		})
	}
}

func TestShapeOpsGrad(t *testing.T) {
	b := newBackend()
	r := newRand(4)
	x := leaf(b, r, -1, 1, 2, 3, 4)
	y := leaf(b, r, -1, 1, 2, 2, 4)
	w := constant(b, r, 4, 2, 3)
	checkGrads(t, b, []named{{"x", x}, {"y", y}}, opTol, func(tp *Tape) *Var {
		c := tp.Concat(1, x, y, x)     // [2,8,4]
		s := tp.Slice(c, -2, 1, 6)     // [2,6,4]
		p := tp.Permute(s, 2, 0, 1)    // [4,2,6]
		v := tp.Reshape(p, 4, 2, 2, 3) // [4,2,2,3]
		return weightedSum(tp, tp.Slice(v, 2, 1, 1), tp.Reshape(w, 4, 2, 1, 3))
	})
}

func TestNormGrad(t *testing.T) {
	b := newBackend()
	r := newRand(5)
	x := leaf(b, r, -1, 1, 2, 3, 6)
	g := leaf(b, r, 0.5, 1.5, 6)
	w := constant(b, r, 2, 3, 6)
	checkGrads(t, b, []named{{"x", x}, {"weight", g}}, opTol, func(tp *Tape) *Var {
		return weightedSum(tp, tp.RMSNorm(x, g, 1e-5), w)
	})
	z := leaf(b, r, -1, 1, 2, 3, 6)
	checkGrads(t, b, []named{{"x", z}}, opTol, func(tp *Tape) *Var {
		return weightedSum(tp, tp.RMSNorm(z, nil, 1e-6), w)
	})
	checkGrads(t, b, []named{{"softmax", x}}, opTol, func(tp *Tape) *Var {
		return weightedSum(tp, tp.Softmax(x), w)
	})
	checkGrads(t, b, []named{{"logsoftmax", z}}, opTol, func(tp *Tape) *Var {
		return weightedSum(tp, tp.LogSoftmax(z), w)
	})
}

func TestCrossEntropy(t *testing.T) {
	b := newBackend()
	r := newRand(6)
	logits := leaf(b, r, -2, 2, 2, 3, 5)
	targets := api.FromInt32s(b, []int32{4, 0, api.IgnoreIndex, 2, 2, 1}, 2, 3)
	checkGrads(t, b, []named{{"logits", logits}}, opTol, func(tp *Tape) *Var {
		return tp.Scale(tp.CrossEntropy(logits, targets), 3) // scaled, so the incoming gradient is not 1
	})
	// The value: the mean over the five counted rows of -log softmax.
	lv := api.Float32s(logits.Value())
	var want float64
	for i, tg := range []int32{4, 0, api.IgnoreIndex, 2, 2, 1} {
		if tg == api.IgnoreIndex {
			continue
		}
		row := lv[5*i : 5*i+5]
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v))
		}
		want += math.Log(sum) - float64(row[tg])
	}
	want /= 5
	loss := NewInferenceTape(b).CrossEntropy(logits, targets)
	if len(loss.Shape()) != 0 {
		t.Errorf("loss shape %v, want []", loss.Shape())
	}
	closeValues(t, "loss", api.Float32s(loss.Value()), []float64{want}, 1e-5*want)

	// Every target ignored: loss 0, gradient 0.
	none := api.FromInt32s(b, []int32{-100, -100}, 2)
	x := leaf(b, r, -1, 1, 2, 5)
	tp := NewTape(b)
	l := tp.CrossEntropy(x, none)
	tp.Backward(l)
	closeValues(t, "loss with every target ignored", api.Float32s(l.Value()), []float64{0}, 0)
	closeValues(t, "gradient with every target ignored", api.Float32s(x.Grad()), make([]float64, 10), 0)

	mustPanic(t, api.ErrOutOfRange, func() {
		NewInferenceTape(b).CrossEntropy(x, api.FromInt32s(b, []int32{1, 5}, 2))
	})
	mustPanic(t, api.ErrShape, func() {
		NewInferenceTape(b).CrossEntropy(x, api.FromInt32s(b, []int32{1, 2, 3}, 3))
	})
}

func TestEmbeddingGrad(t *testing.T) {
	b := newBackend()
	r := newRand(8)
	table := leaf(b, r, -1, 1, 5, 3)
	ids := api.FromInt32s(b, []int32{1, 4, 1, 0, 1, 3}, 2, 3) // id 1 three times, id 2 never
	w := constant(b, r, 2, 3, 3)
	checkGrads(t, b, []named{{"table", table}}, opTol, func(tp *Tape) *Var {
		return weightedSum(tp, tp.Embedding(table, ids), w)
	})
	mustPanic(t, api.ErrOutOfRange, func() {
		NewInferenceTape(b).Embedding(table, api.FromInt32s(b, []int32{5}, 1))
	})
}

func TestCausalConv1dGrad(t *testing.T) { forSequenceBackends(t, testCausalConv1dGrad) }

func testCausalConv1dGrad(t *testing.T, b api.Backend) {
	r := newRand(9)
	const bs, tl, c, k = 2, 5, 3, 4
	x := leaf(b, r, -1, 1, bs, tl, c)
	w := leaf(b, r, -1, 1, c, k)
	bias := leaf(b, r, -1, 1, c)
	prev := leaf(b, r, -1, 1, bs, k-1, c)
	dy := constant(b, r, bs, tl, c)
	checkGrads(t, b, []named{{"x", x}, {"w", w}, {"bias", bias}, {"prev", prev}}, opTol, func(tp *Tape) *Var {
		return weightedSum(tp, tp.CausalConv1d(x, w, bias, prev), dy)
	})
	x2 := leaf(b, r, -1, 1, bs, tl, c)
	w2 := leaf(b, r, -1, 1, c, k)
	checkGrads(t, b, []named{{"x without bias and prev", x2}, {"w without bias and prev", w2}}, opTol, func(tp *Tape) *Var {
		return weightedSum(tp, tp.CausalConv1d(x2, w2, nil, nil), dy)
	})
}

// scanInputs returns leaves for a selective scan [B,T,E] with state N, in
// ranges where the recurrence is well conditioned.
func scanInputs(b api.Backend, seed uint64, bs, tl, e, n int) ScanVars {
	r := newRand(seed)
	return ScanVars{
		X:      leaf(b, r, -1, 1, bs, tl, e),
		Delta:  leaf(b, r, 0.1, 0.8, bs, tl, e),
		A:      leaf(b, r, -1.5, -0.5, e, n),
		Bm:     leaf(b, r, -1, 1, bs, tl, n),
		Cm:     leaf(b, r, -1, 1, bs, tl, n),
		D:      leaf(b, r, -1, 1, e),
		H0:     leaf(b, r, -1, 1, bs, e, n),
		Inject: leaf(b, r, -0.5, 0.5, bs, tl, e, n),
	}
}

func (s ScanVars) named() []named {
	return []named{{"X", s.X}, {"Delta", s.Delta}, {"A", s.A}, {"Bm", s.Bm}, {"Cm", s.Cm}, {"D", s.D}, {"H0", s.H0},
		{"Inject", s.Inject}}
}

func TestSelectiveScanGrad(t *testing.T) { forSequenceBackends(t, testSelectiveScanGrad) }

func testSelectiveScanGrad(t *testing.T, b api.Backend) {
	const bs, tl, e, n = 2, 5, 3, 4
	r := newRand(10)
	wy, wh, ws := constant(b, r, bs, tl, e), constant(b, r, bs, e, n), constant(b, r, bs, tl, e, n)
	t.Run("with state", func(t *testing.T) {
		in := scanInputs(b, 11, bs, tl, e, n)
		in.Inject = nil
		checkGrads(t, b, in.named()[:7], opTol, func(tp *Tape) *Var {
			y, hT, hs := tp.SelectiveScan(in, true, false)
			if hs != nil {
				t.Fatal("states returned without withStates")
			}
			return tp.Add(weightedSum(tp, y, wy), weightedSum(tp, hT, wh))
		})
	})
	t.Run("state only", func(t *testing.T) {
		in := scanInputs(b, 12, bs, tl, e, n)
		in.Inject = nil
		checkGrads(t, b, in.named()[:7], opTol, func(tp *Tape) *Var {
			_, hT, _ := tp.SelectiveScan(in, true, false)
			return weightedSum(tp, hT, wh)
		})
	})
	t.Run("no D, no H0", func(t *testing.T) {
		in := scanInputs(b, 13, bs, tl, e, n)
		in.D, in.H0, in.Inject = nil, nil, nil
		checkGrads(t, b, in.named()[:5], opTol, func(tp *Tape) *Var {
			y, hT, _ := tp.SelectiveScan(in, false, false)
			if hT != nil {
				t.Fatal("final state returned without withState")
			}
			return weightedSum(tp, y, wy)
		})
	})
	t.Run("inject, every output", func(t *testing.T) {
		in := scanInputs(b, 15, bs, tl, e, n)
		checkGrads(t, b, in.named(), opTol, func(tp *Tape) *Var {
			y, hT, hs := tp.SelectiveScan(in, true, true)
			return tp.Add(tp.Add(weightedSum(tp, y, wy), weightedSum(tp, hT, wh)), weightedSum(tp, hs, ws))
		})
	})
	t.Run("inject, states only", func(t *testing.T) {
		in := scanInputs(b, 16, bs, tl, e, n)
		checkGrads(t, b, in.named(), opTol, func(tp *Tape) *Var {
			_, hT, hs := tp.SelectiveScan(in, false, true)
			if hT != nil || hs == nil {
				t.Fatal("withStates alone should return hs and no hT")
			}
			return weightedSum(tp, hs, ws)
		})
	})
	t.Run("states feed the next scan", func(t *testing.T) {
		// The DenseMamba pattern: one layer's pre-injection states, gated,
		// are injected into the next layer's scan.
		lower := scanInputs(b, 17, bs, tl, e, n)
		lower.Inject = nil
		upper := scanInputs(b, 18, bs, tl, e, n)
		gate := leaf(b, newRand(19), 0, 1, bs, tl, e, 1)
		vars := append(lower.named()[:7], named{"gate", gate})
		checkGrads(t, b, vars, opTol, func(tp *Tape) *Var {
			y0, _, hs := tp.SelectiveScan(lower, false, true)
			up := upper
			up.Inject = tp.Mul(gate, hs)
			y1, _, _ := tp.SelectiveScan(up, false, false)
			return tp.Add(weightedSum(tp, y0, wy), weightedSum(tp, y1, wy))
		})
	})
}

func TestRotaryGrad(t *testing.T) { forSequenceBackends(t, testRotaryGrad) }

func testRotaryGrad(t *testing.T, b api.Backend) {
	r := newRand(14)
	x := leaf(b, r, -1, 1, 2, 5, 6)
	w := constant(b, r, 2, 5, 6)
	theta := RotaryTheta(6)
	checkGrads(t, b, []named{{"x", x}}, opTol, func(tp *Tape) *Var {
		return weightedSum(tp, tp.Rotary(x, theta, 3), w)
	})
}

// retentionInputs returns leaves for retention with B=2, H=2, T=5, dk=4,
// dv=3. Queries and keys are small, so that in the parallel form every row's
// absolute sum stays below 1 and the clamped denominator is the constant 1
// (the finite differences then see no gradient through it either).
func retentionInputs(b api.Backend, seed uint64, withS0 bool) RetentionVars {
	r := newRand(seed)
	in := RetentionVars{
		Q:     leaf(b, r, -0.3, 0.3, 2, 2, 5, 4),
		K:     leaf(b, r, -0.3, 0.3, 2, 2, 5, 4),
		V:     leaf(b, r, -1, 1, 2, 2, 5, 3),
		Gamma: []float32{0.9, 0.6},
		Chunk: 2,
	}
	if withS0 {
		in.S0 = leaf(b, r, -1, 1, 2, 2, 4, 3)
		in.Offset = 3
	}
	return in
}

func (in RetentionVars) named() []named {
	out := []named{{"Q", in.Q}, {"K", in.K}, {"V", in.V}}
	if in.S0 != nil {
		out = append(out, named{"S0", in.S0})
	}
	return out
}

func TestRetentionGrad(t *testing.T) { forSequenceBackends(t, testRetentionGrad) }

func testRetentionGrad(t *testing.T, b api.Backend) {
	r := newRand(15)
	wo, ws := constant(b, r, 2, 2, 5, 3), constant(b, r, 2, 2, 4, 3)
	t.Run("parallel", func(t *testing.T) {
		in := retentionInputs(b, 16, false)
		checkGrads(t, b, in.named(), opTol, func(tp *Tape) *Var {
			o, _ := tp.Retention(api.RetentionParallel, in, false)
			return weightedSum(tp, o, wo)
		})
	})
	for _, form := range []api.RetentionForm{api.RetentionChunkwise, api.RetentionRecurrent} {
		t.Run(form.String(), func(t *testing.T) {
			in := retentionInputs(b, 17, true)
			checkGrads(t, b, in.named(), opTol, func(tp *Tape) *Var {
				o, sT := tp.Retention(form, in, true)
				return tp.Add(weightedSum(tp, o, wo), weightedSum(tp, sT, ws))
			})
		})
		t.Run(form.String()+"/state only", func(t *testing.T) {
			in := retentionInputs(b, 18, true)
			checkGrads(t, b, in.named(), opTol, func(tp *Tape) *Var {
				_, sT := tp.Retention(form, in, true)
				return weightedSum(tp, sT, ws)
			})
		})
	}
	t.Run("same Var as Q and K", func(t *testing.T) {
		in := retentionInputs(b, 19, false)
		in.K = in.Q
		checkGrads(t, b, in.named()[:1], opTol, func(tp *Tape) *Var {
			o, _ := tp.Retention(api.RetentionChunkwise, in, false)
			return weightedSum(tp, o, wo)
		})
	})
	mustPanic(t, api.ErrShape, func() {
		in := retentionInputs(b, 20, true)
		NewInferenceTape(b).Retention(api.RetentionParallel, in, false)
	})
}

func TestShapeErrors(t *testing.T) {
	b := newBackend()
	r := newRand(21)
	x := leaf(b, r, -1, 1, 2, 3)
	y := leaf(b, r, -1, 1, 4, 5)
	tp := NewTape(b)
	for name, f := range map[string]func(){
		"add":     func() { tp.Add(x, y) },
		"matmul":  func() { tp.MatMul(x, y, false, false) },
		"linear":  func() { tp.Linear(x, y, nil) },
		"reshape": func() { tp.Reshape(x, 5) },
		"permute": func() { tp.Permute(x, 0, 0) },
		"slice":   func() { tp.Slice(x, 1, 2, 2) },
		"concat":  func() { tp.Concat(0, x, y) },
		"axis":    func() { tp.Slice(x, 2, 0, 1) },
		"rmsnorm": func() { tp.RMSNorm(x, y, 1e-5) },
		"rotary":  func() { tp.Rotary(y, []float32{1, 2}, 0) },
		"sumto":   func() { tp.SumTo(x, 2) },
	} {
		t.Run(name, func(t *testing.T) { mustPanic(t, api.ErrShape, f) })
	}
}
