package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	registerFused("retention", "RetentionKernels", seqTestRetention)
	registerFused("retention_forms", "RetentionKernels", seqTestRetentionForms)
	registerFused("retention_misuse", "RetentionKernels", seqTestRetentionMisuse)
}

// seqRetCase is one retention configuration: Q, K [B,H,T,dk], V [B,H,T,dv]
// and one decay per head.
type seqRetCase struct {
	B, H, T, dk, dv int
	gamma           []float32
}

func (c seqRetCase) String() string {
	return fmt.Sprintf("B%d_H%d_T%d_dk%d_dv%d", c.B, c.H, c.T, c.dk, c.dv)
}

// seqRetNetGammas are RetNet's decays 1-2^(-5-h) for three heads.
var seqRetNetGammas = []float32{1 - 1.0/32, 1 - 1.0/64, 1 - 1.0/128}

var seqRetCases = []seqRetCase{
	{B: 2, H: 3, T: 13, dk: 4, dv: 5, gamma: seqRetNetGammas},
	{B: 2, H: 3, T: 7, dk: 6, dv: 5, gamma: seqRetNetGammas},
	{B: 1, H: 2, T: 11, dk: 2, dv: 3, gamma: []float32{0.25, 0.999}},
	{B: 1, H: 1, T: 1, dk: 1, dv: 1, gamma: []float32{0.5}},
	{B: 2, H: 2, T: 0, dk: 4, dv: 3, gamma: []float32{0.9, 0.75}}, // empty sequence: sT = S0
}

// seqRetChunks are the chunk sizes tried for the chunkwise form: single
// tokens, a size that does not divide T, and sizes at and beyond T.
var seqRetChunks = []int{1, 3, 16, 100}

// seqRetData holds the inputs of one case (float32-exact); s0 is nil when
// the state starts from zero.
type seqRetData struct {
	q, k, v, s0 []float64
}

// list returns the inputs in RetentionArgs order.
func (d seqRetData) list() [][]float64 { return [][]float64{d.q, d.k, d.v, d.s0} }

// nQK, nV and nS are the element counts of Q (and K), V, and S0 (and sT).
func (c seqRetCase) nQK() int { return c.B * c.H * c.T * c.dk }
func (c seqRetCase) nV() int  { return c.B * c.H * c.T * c.dv }
func (c seqRetCase) nS() int  { return c.B * c.H * c.dk * c.dv }

// seqRetInputs draws Q and K from U(-scale, scale), V and S0 from U(-1, 1).
func seqRetInputs(c seqRetCase, seed uint64, scale float64, withS0 bool) seqRetData {
	r := newRand(seed)
	d := seqRetData{
		q: f32(randVals(r, c.nQK(), -scale, scale)),
		k: f32(randVals(r, c.nQK(), -scale, scale)),
		v: f32(randVals(r, c.nV(), -1, 1)),
	}
	if withS0 {
		d.s0 = f32(randVals(r, c.nS(), -1, 1))
	}
	return d
}

// seqRetArgs uploads the inputs of one case.
func seqRetArgs(be retentionBackend, c seqRetCase, d seqRetData, offset, chunk int) api.RetentionArgs {
	return api.RetentionArgs{
		Q:      upload(be, d.q, c.B, c.H, c.T, c.dk),
		K:      upload(be, d.k, c.B, c.H, c.T, c.dk),
		V:      upload(be, d.v, c.B, c.H, c.T, c.dv),
		S0:     seqUploadOpt(be, d.s0, c.B, c.H, c.dk, c.dv),
		Gamma:  c.gamma,
		Offset: offset,
		Chunk:  chunk,
	}
}

// seqRetRecurrentRef is the float64 reference of the recurrent (and
// chunkwise) form, token by token from the RetentionArgs recurrence:
//
//	S_p = S_{p-1} gamma sqrt(s_{p-1}/s_p) + k_p^T v_p / sqrt(s_p),  o_p = q_p S_p
//
// with s_p = sum_{j<=p} gamma^j and p = offset + t. It returns o [B,H,T,dv]
// followed by sT [B,H,dk,dv] in one slice; an empty s0 means zeros.
func seqRetRecurrentRef(c seqRetCase, q, k, v, s0 []float64, offset int) []float64 {
	out := make([]float64, c.nV()+c.nS())
	o, st := out[:c.nV()], out[c.nV():]
	copy(st, s0)
	for bh := range c.B * c.H {
		g := float64(c.gamma[bh%c.H])
		S := st[bh*c.dk*c.dv : (bh+1)*c.dk*c.dv]
		var prev float64 // s_{offset-1}; s_{-1} = 0
		for range offset {
			prev = g*prev + 1
		}
		for t := range c.T {
			cur := g*prev + 1
			decay, scale := g*math.Sqrt(prev/cur), 1/math.Sqrt(cur)
			row := bh*c.T + t
			qt, kt := q[row*c.dk:(row+1)*c.dk], k[row*c.dk:(row+1)*c.dk]
			vt := v[row*c.dv : (row+1)*c.dv]
			for i := range c.dk {
				for j := range c.dv {
					S[i*c.dv+j] = S[i*c.dv+j]*decay + kt[i]*vt[j]*scale
				}
			}
			for j := range c.dv {
				var acc float64
				for i := range c.dk {
					acc += qt[i] * S[i*c.dv+j]
				}
				o[row*c.dv+j] = acc
			}
			prev = cur
		}
	}
	return out
}

// seqRetParallelRef is the float64 reference of the parallel form
// (torchscale's): A = (Q K^T) * D with D[n,m] = gamma^(n-m)/sqrt(s_n) for
// m <= n, each row divided by clamp(sum_m |A[n,m]|, 1, 5e4), O = A V. When
// den is not nil, its values [B,H,T] replace the row denominators, which
// makes them constants for finite differences (the kernel passes no
// gradient through them). It returns O and the denominators used.
func seqRetParallelRef(c seqRetCase, q, k, v, den []float64) (o, used []float64) {
	o, used = make([]float64, c.nV()), make([]float64, c.B*c.H*c.T)
	a := make([]float64, c.T)
	for bh := range c.B * c.H {
		g := float64(c.gamma[bh%c.H])
		var sn float64
		for n := range c.T {
			sn = g*sn + 1 // s_n = sum_{j<=n} gamma^j
			var abs float64
			qn := q[(bh*c.T+n)*c.dk : (bh*c.T+n+1)*c.dk]
			for m := 0; m <= n; m++ {
				var dot float64
				for i, qv := range qn {
					dot += qv * k[(bh*c.T+m)*c.dk+i]
				}
				a[m] = dot * math.Pow(g, float64(n-m)) / math.Sqrt(sn)
				abs += math.Abs(a[m])
			}
			d := min(max(abs, 1), 5e4)
			if den != nil {
				d = den[bh*c.T+n]
			}
			used[bh*c.T+n] = d
			for j := range c.dv {
				var acc float64
				for m := 0; m <= n; m++ {
					acc += a[m] * v[(bh*c.T+m)*c.dv+j]
				}
				o[(bh*c.T+n)*c.dv+j] = acc / d
			}
		}
	}
	return o, used
}

// seqRetRun runs one form on the backend and returns o and, when withST,
// sT (nil otherwise).
func seqRetRun(be retentionBackend, form api.RetentionForm, c seqRetCase, in api.RetentionArgs, withST bool) (o, sT []float64) {
	oT := seqGarbage(be, c.B, c.H, c.T, c.dv)
	sTT := seqGarbageIf(be, withST, c.B, c.H, c.dk, c.dv)
	be.Retention(form, oT, sTT, in)
	return download(oT), seqDownloadOpt(sTT)
}

// seqRetForm is a stateful retention form with its chunk size (0 for the
// recurrent form).
type seqRetForm struct {
	form  api.RetentionForm
	chunk int
}

func (f seqRetForm) String() string {
	if f.form == api.RetentionChunkwise {
		return fmt.Sprintf("chunkwise%d", f.chunk)
	}
	return f.form.String()
}

// seqRetStateful returns the recurrent form followed by the chunkwise form
// with each of the given chunk sizes.
func seqRetStateful(chunks []int) []seqRetForm {
	forms := []seqRetForm{{api.RetentionRecurrent, 0}}
	for _, ch := range chunks {
		forms = append(forms, seqRetForm{api.RetentionChunkwise, ch})
	}
	return forms
}

// seqRetOffsets are the (offset, S0 given) pairs tried for the stateful
// forms (a nil S0 requires offset 0).
var seqRetOffsets = []struct {
	offset int
	s0     bool
}{{0, false}, {9, true}, {1000, true}}

// seqTestRetention checks each form against its float64 reference.
func seqTestRetention(t *testing.T, be retentionBackend) {
	for i, c := range seqRetCases {
		runSub(t, c.String()+"/parallel", func(t *testing.T) {
			d := seqRetInputs(c, 1000+uint64(i), 1, false)
			want, _ := seqRetParallelRef(c, d.q, d.k, d.v, nil)
			o, _ := seqRetRun(be, api.RetentionParallel, c, seqRetArgs(be, c, d, 0, 0), false)
			checkRel(t, "o", o, want, RelTol)
		})
		for _, off := range seqRetOffsets {
			d := seqRetInputs(c, 1100+uint64(i), 1, off.s0)
			want := seqRetRecurrentRef(c, d.q, d.k, d.v, d.s0, off.offset)
			for _, f := range seqRetStateful(seqRetChunks) {
				name := fmt.Sprintf("%v/%v_offset%d", c, f, off.offset)
				runSub(t, name, func(t *testing.T) {
					in := seqRetArgs(be, c, d, off.offset, f.chunk)
					o, sT := seqRetRun(be, f.form, c, in, true)
					checkRel(t, "o", o, want[:c.nV()], RelTol)
					checkRel(t, "sT", sT, want[c.nV():], RelTol)
					o, _ = seqRetRun(be, f.form, c, in, false)
					checkRel(t, "o (sT nil)", o, want[:c.nV()], RelTol)
					if in.S0 != nil {
						// The state advanced in place: sT is S0.
						oT := seqGarbage(be, c.B, c.H, c.T, c.dv)
						be.Retention(f.form, oT, in.S0, in)
						checkRel(t, "o (sT = S0)", download(oT), want[:c.nV()], RelTol)
						checkRel(t, "sT = S0", download(in.S0), want[c.nV():], RelTol)
					}
				})
			}
		}
	}
	runSub(t, "parallel_clamp", func(t *testing.T) {
		// Scale 1 gives rows on both sides of the lower clamp; scale 400
		// pushes rows above the upper clamp 5e4.
		c := seqRetCases[0]
		for _, scale := range []float64{1, 400} {
			d := seqRetInputs(c, 1200, scale, false)
			want, den := seqRetParallelRef(c, d.q, d.k, d.v, nil)
			seqRetCheckClamp(t, den, scale > 1)
			o, _ := seqRetRun(be, api.RetentionParallel, c, seqRetArgs(be, c, d, 0, 0), false)
			checkRel(t, fmt.Sprintf("o (scale %g)", scale), o, want, RelTol)
		}
	})
}

// seqRetCheckClamp fails t when the denominators of a test input do not
// exercise the clamp as intended: rows at 1 and rows strictly between 1 and
// 5e4, or (upper) some rows at 5e4.
func seqRetCheckClamp(t *testing.T, den []float64, upper bool) {
	t.Helper()
	var low, mid, high int
	for _, d := range den {
		switch {
		case d == 1:
			low++
		case d == 5e4:
			high++
		default:
			mid++
		}
	}
	if (!upper && (low == 0 || mid == 0)) || (upper && high == 0) {
		t.Fatalf("test input does not exercise the clamp: %d rows at 1, %d between, %d at 5e4", low, mid, high)
	}
}

// seqRowRMSNormalize divides each row of width w by its root mean square.
func seqRowRMSNormalize(v []float64, w int) []float64 {
	out := make([]float64, len(v))
	for r := 0; r < len(v); r += w {
		var ss float64
		for _, x := range v[r : r+w] {
			ss += x * x
		}
		rms := math.Sqrt(ss / float64(w))
		for j, x := range v[r : r+w] {
			out[r+j] = x / rms
		}
	}
	return out
}

// seqTestRetentionForms checks the forms against each other: chunkwise
// equals recurrent, a sequence split over calls equals one call, and
// parallel equals recurrent up to a per-row scale.
func seqTestRetentionForms(t *testing.T, be retentionBackend) {
	c := seqRetCases[0]
	// The chunkwise form equals the recurrent one (both carry rounding
	// errors bounded by RelTol against the reference, hence 2*RelTol).
	for _, off := range seqRetOffsets[:2] {
		d := seqRetInputs(c, 1300, 1, off.s0)
		for _, chunk := range []int{1, 2, 3, 5, c.T, 16, 100} {
			runSub(t, fmt.Sprintf("chunkwise_eq_recurrent/chunk%d_offset%d", chunk, off.offset), func(t *testing.T) {
				ro, rs := seqRetRun(be, api.RetentionRecurrent, c, seqRetArgs(be, c, d, off.offset, 0), true)
				co, cs := seqRetRun(be, api.RetentionChunkwise, c, seqRetArgs(be, c, d, off.offset, chunk), true)
				checkRel(t, "o", co, ro, 2*RelTol)
				checkRel(t, "sT", cs, rs, 2*RelTol)
			})
		}
	}

	// Tokens [0,k) then [k,T) with S0 = the first call's sT and Offset
	// moved on by k equal one run over [0,T).
	for _, off := range seqRetOffsets[:2] {
		d := seqRetInputs(c, 1400, 1, off.s0)
		for _, f := range seqRetStateful([]int{3, 16}) {
			whole, wholeS := seqRetRun(be, f.form, c, seqRetArgs(be, c, d, off.offset, f.chunk), true)
			for _, k := range []int{1, 5, c.T - 1} {
				runSub(t, fmt.Sprintf("continuation/%v_offset%d_split%d", f, off.offset, k), func(t *testing.T) {
					o, sT := seqRetContinue(be, f.form, f.chunk, c, d, off.offset, []int{k, c.T - k})
					checkRel(t, "o", o, whole, 2*RelTol)
					checkRel(t, "sT", sT, wholeS, 2*RelTol)
				})
			}
		}
	}

	// Decoding: a chunkwise prefill of 6 tokens, then one recurrent call
	// per token, against the reference of one run.
	runSub(t, "prefill_then_decode", func(t *testing.T) {
		d := seqRetInputs(c, 1500, 1, true)
		want := seqRetRecurrentRef(c, d.q, d.k, d.v, d.s0, 9)
		pieces := []int{6}
		for range c.T - 6 {
			pieces = append(pieces, 1)
		}
		forms := make([]api.RetentionForm, len(pieces))
		for j := range forms {
			forms[j] = api.RetentionRecurrent
		}
		forms[0] = api.RetentionChunkwise
		o, sT := seqRetPieces(be, forms, 4, c, d, 9, pieces)
		checkRel(t, "o", o, want[:c.nV()], RelTol)
		checkRel(t, "sT", sT, want[c.nV():], RelTol)
	})

	// The parallel form differs from the recurrent one by a positive scalar
	// per row, which a row RMS normalisation removes. Both sides are
	// backend results, hence 2*RelTol; the float64 references are held to
	// the same property first, which checks them against each other.
	for i, cc := range seqRetCases[:4] {
		runSub(t, "parallel_eq_recurrent_after_norm/"+cc.String(), func(t *testing.T) {
			d := seqRetInputs(cc, 1600+uint64(i), 1, false)
			refP, _ := seqRetParallelRef(cc, d.q, d.k, d.v, nil)
			refR := seqRetRecurrentRef(cc, d.q, d.k, d.v, nil, 0)[:cc.nV()]
			if e := relErr(seqRowRMSNormalize(refP, cc.dv), seqRowRMSNormalize(refR, cc.dv)); e > 1e-12 {
				t.Fatalf("float64 references disagree after normalisation: %g", e)
			}
			p, _ := seqRetRun(be, api.RetentionParallel, cc, seqRetArgs(be, cc, d, 0, 0), false)
			r, _ := seqRetRun(be, api.RetentionRecurrent, cc, seqRetArgs(be, cc, d, 0, 0), false)
			checkRel(t, "normalised o", seqRowRMSNormalize(p, cc.dv), seqRowRMSNormalize(r, cc.dv), 2*RelTol)
		})
	}
}

// seqRetContinue runs form over consecutive pieces of the sequence (sizes
// summing to T), each call continuing from the previous call's state.
func seqRetContinue(be retentionBackend, form api.RetentionForm, chunk int, c seqRetCase, d seqRetData, offset int, pieces []int) (o, sT []float64) {
	forms := make([]api.RetentionForm, len(pieces))
	for j := range forms {
		forms[j] = form
	}
	return seqRetPieces(be, forms, chunk, c, d, offset, pieces)
}

// seqRetPieces runs piece j of the sequence with forms[j], starting at
// offset from d.s0 and handing each call's sT to the next as S0; it returns
// the joined o and the last sT.
func seqRetPieces(be retentionBackend, forms []api.RetentionForm, chunk int, c seqRetCase, d seqRetData, offset int, pieces []int) (o, sT []float64) {
	var outs [][]float64
	s0, start := d.s0, 0
	for j, n := range pieces {
		pc := c
		pc.T = n
		pd := seqRetData{
			q:  seqSliceAxis(d.q, c.B*c.H, c.T, c.dk, start, n),
			k:  seqSliceAxis(d.k, c.B*c.H, c.T, c.dk, start, n),
			v:  seqSliceAxis(d.v, c.B*c.H, c.T, c.dv, start, n),
			s0: s0,
		}
		po, ps := seqRetRun(be, forms[j], pc, seqRetArgs(be, pc, pd, offset+start, chunk), true)
		outs = append(outs, po)
		s0, start = ps, start+n
	}
	return seqJoinAxis(outs, c.B*c.H, c.dv), s0
}

// seqTestRetentionMisuse checks that mismatched shapes panic with ErrShape.
func seqTestRetentionMisuse(t *testing.T, be retentionBackend) {
	c := seqRetCase{B: 2, H: 3, T: 5, dk: 4, dv: 3, gamma: seqRetNetGammas}
	good := func() api.RetentionArgs {
		return seqRetArgs(be, c, seqRetInputs(c, 1700, 1, true), 2, 2)
	}
	o, sT := be.Alloc(api.F32, c.B, c.H, c.T, c.dv), be.Alloc(api.F32, c.B, c.H, c.dk, c.dv)
	for _, form := range []api.RetentionForm{api.RetentionParallel, api.RetentionChunkwise, api.RetentionRecurrent} {
		stateful := form != api.RetentionParallel
		args := func() api.RetentionArgs {
			in := good()
			if !stateful {
				in.S0, in.Offset = nil, 0
			}
			return in
		}
		st := sT
		if !stateful {
			st = nil
		}
		cases := []struct {
			what string
			fn   func()
		}{
			{"K of dk+1", func() { in := args(); in.K = be.Alloc(api.F32, c.B, c.H, c.T, c.dk+1); be.Retention(form, o, st, in) }},
			{"V of T+1", func() { in := args(); in.V = be.Alloc(api.F32, c.B, c.H, c.T+1, c.dv); be.Retention(form, o, st, in) }},
			{"Q of H+1", func() { in := args(); in.Q = be.Alloc(api.F32, c.B, c.H+1, c.T, c.dk); be.Retention(form, o, st, in) }},
			{"Gamma of H+1", func() { in := args(); in.Gamma = append(in.Gamma, 0.5); be.Retention(form, o, st, in) }},
			{"o of dv+1", func() { be.Retention(form, be.Alloc(api.F32, c.B, c.H, c.T, c.dv+1), st, args()) }},
			{"grad dQ of T+1", func() {
				be.RetentionGrad(form, api.RetentionGrads{Q: be.Alloc(api.F32, c.B, c.H, c.T+1, c.dk)}, args(), o, nil)
			}},
			{"grad dV of dk", func() {
				be.RetentionGrad(form, api.RetentionGrads{V: be.Alloc(api.F32, c.B, c.H, c.T, c.dk)}, args(), o, nil)
			}},
			{"grad do of dk", func() {
				be.RetentionGrad(form, api.RetentionGrads{Q: be.Alloc(api.F32, c.B, c.H, c.T, c.dk)}, args(), be.Alloc(api.F32, c.B, c.H, c.T, c.dk), nil)
			}},
		}
		if stateful {
			cases = append(cases, []struct {
				what string
				fn   func()
			}{
				{"S0 transposed", func() { in := args(); in.S0 = be.Alloc(api.F32, c.B, c.H, c.dv, c.dk); be.Retention(form, o, sT, in) }},
				{"sT transposed", func() { be.Retention(form, o, be.Alloc(api.F32, c.B, c.H, c.dv, c.dk), args()) }},
				{"grad dS0 transposed", func() {
					be.RetentionGrad(form, api.RetentionGrads{S0: be.Alloc(api.F32, c.B, c.H, c.dv, c.dk)}, args(), o, nil)
				}},
				{"grad dsT transposed", func() {
					be.RetentionGrad(form, api.RetentionGrads{Q: be.Alloc(api.F32, c.B, c.H, c.T, c.dk)}, args(), o, be.Alloc(api.F32, c.B, c.H, c.dv, c.dk))
				}},
			}...)
		}
		for _, m := range cases {
			mustPanicWith(t, fmt.Sprintf("%v: %s", form, m.what), m.fn, api.ErrShape)
		}
	}
}
