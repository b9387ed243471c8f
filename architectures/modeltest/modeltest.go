// Package modeltest holds the checks every architecture's tests run on its
// configs and models, as backends/backendtest does for backends: config
// parsing (the fields' domains, the committed configs, fuzzing), the
// memory estimates against the parameters and the allocations, the
// recurrent forms against the parallel one, allocation-free decoding, a
// save and load round trip, parity with a reference implementation's
// recorded logits, loss and gradients, and the same model on two backends
// (nn's reference kernels against a backend's fused ones). The checks that build models take
// their configs as data and build them with the registered architecture
// the config names, as checkpoint.LoadModel does.
package modeltest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

// RandomIDs returns batch sequences of T ids drawn uniformly from [0, vocab).
func RandomIDs(r *rand.Rand, batch, T, vocab int) [][]int32 {
	ids := make([][]int32, batch)
	for b := range ids {
		for range T {
			ids[b] = append(ids[b], int32(r.IntN(vocab)))
		}
	}
	return ids
}

// RelErr returns max |got-want| / max |want| (max |got-want| when want is
// all zeros), +Inf when the lengths differ or a value is NaN.
func RelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var diff, scale float64
	for i := range want {
		diff = max(diff, math.Abs(float64(got[i])-float64(want[i])))
		scale = max(scale, math.Abs(float64(want[i])))
	}
	if math.IsNaN(diff) {
		return math.Inf(1)
	}
	if scale == 0 {
		return diff
	}
	return diff / scale
}

// Logits is a check of logits [B,n,V] for tokens from..from+n-1 against
// want [B,T,V]; CheckRecurrentForms calls it, and callers use it for forms
// of their own (RetNet's chunkwise form).
type Logits struct {
	Want    []float32 // [B,T,V]
	B, T, V int
	Tol     float64
	Worst   float64 // the largest error seen so far
}

// Check fails t unless every token's logits in got [B,n,V] (tokens
// from..from+n-1) are within Tol of Want by RelErr.
func (l *Logits) Check(t testing.TB, what string, got []float32, from, n int) {
	t.Helper()
	for bi := range l.B {
		for ti := range n {
			g := got[(bi*n+ti)*l.V : (bi*n+ti+1)*l.V]
			w := l.Want[(bi*l.T+from+ti)*l.V : (bi*l.T+from+ti+1)*l.V]
			e := RelErr(g, w)
			l.Worst = max(l.Worst, e)
			if !(e <= l.Tol) {
				t.Fatalf("%s: token %d of sequence %d: relative error %.3g > %g", what, from+ti, bi, e, l.Tol)
			}
		}
	}
}

// CheckRecurrentForms checks that Steps from an empty state, and a Prefill
// of the first split tokens followed by Steps, give the logits l.Want (the
// parallel form's, for ids) to l.Tol, and that the state then counts every
// token.
func CheckRecurrentForms(t testing.TB, m api.Model, ids [][]int32, split int, l *Logits) {
	t.Helper()
	ctx := context.Background()
	steps := func(what string, s api.State, from int) {
		t.Helper()
		for ti := from; ti < l.T; ti++ {
			step := make([]int32, l.B)
			for bi := range l.B {
				step[bi] = ids[bi][ti]
			}
			logits, err := m.Step(ctx, s, step)
			if err != nil {
				t.Fatal(err)
			}
			l.Check(t, what, api.Float32s(logits), ti, 1)
		}
	}
	s, err := m.NewState(l.B)
	if err != nil {
		t.Fatal(err)
	}
	steps("recurrent", s, 0)

	s, err = m.NewState(l.B)
	if err != nil {
		t.Fatal(err)
	}
	head := make([][]int32, l.B)
	for bi := range head {
		head[bi] = ids[bi][:split]
	}
	pre, err := m.Prefill(ctx, s, head, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	l.Check(t, "prefill", api.Float32s(pre), 0, split)
	steps("prefill+steps", s, split)
	if s.Len() != l.T {
		t.Errorf("state length %d after prefill and steps, want %d", s.Len(), l.T)
	}
}

// CheckForwardInto checks that an api.ForwardIntoModel writes into a
// destination exactly the parallel form's logits want (bit for bit, every
// element: the destination starts as NaN), and that a destination of the
// wrong shape is an ErrShape error, not a panic.
func CheckForwardInto(t testing.TB, m api.Model, ids [][]int32, want []float32) {
	t.Helper()
	fm, ok := m.(api.ForwardIntoModel)
	if !ok {
		t.Fatalf("%s models do not implement api.ForwardIntoModel", m.Config().ArchName())
	}
	b := m.(api.LocalModel).Backend()
	B, T, V := len(ids), len(ids[0]), m.Config().Vocab()
	dst := b.Alloc(api.F32, B, T, V)
	b.Fill(dst, float32(math.NaN()))
	if err := fm.ForwardInto(context.Background(), dst, ids); err != nil {
		t.Fatal(err)
	}
	got := api.Float32s(dst)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("ForwardInto: element %d = %g, Forward gave %g", i, got[i], want[i])
		}
	}
	err := fm.ForwardInto(context.Background(), b.Alloc(api.F32, B, T, V+1), ids)
	if !errors.Is(err, api.ErrShape) {
		t.Errorf("ForwardInto with a [%d,%d,%d] destination: %v, want ErrShape", B, T, V+1, err)
	}
}

// CheckStepAllocs checks that a decode Step of batch sequences allocates
// nothing once the state's buffers exist (testing.AllocsPerRun after one
// warm-up step). Run it only without the race detector, which makes
// sync.Pool drop values.
func CheckStepAllocs(t *testing.T, what string, m api.Model, batch int) {
	t.Helper()
	ctx := context.Background()
	s, err := m.NewState(batch)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, batch)
	for i := range ids {
		ids[i] = int32(3 + i)
	}
	if _, err := m.Step(ctx, s, ids); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := m.Step(ctx, s, ids); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%s: %.1f allocations per step", what, allocs)
	}
}

// Int32Rows reads a reference fixture's I32 tensor [B,T] as B rows.
func Int32Rows(t testing.TB, ck *checkpoint.Checkpoint, name string) [][]int32 {
	t.Helper()
	info, ok := ck.Lookup(name)
	if !ok || info.DType != api.I32 || info.Shape.Rank() != 2 {
		t.Fatalf("reference tensor %q: want I32 [B,T], have %+v", name, info)
	}
	raw, err := ck.Raw(name)
	if err != nil {
		t.Fatal(err)
	}
	B, T := info.Shape[0], info.Shape[1]
	rows := make([][]int32, B)
	for b := range rows {
		rows[b] = make([]int32, T)
		for i := range rows[b] {
			rows[b][i] = int32(binary.LittleEndian.Uint32(raw[4*(b*T+i):]))
		}
	}
	return rows
}

// CheckUninitialized checks that the architecture registered as name builds
// with BuildOptions.Zeros the model New builds, the same parameters (names,
// shapes, dtypes) in the same order, every one zero.
func CheckUninitialized(t *testing.T, name string, cfg api.Config, b api.Backend) {
	t.Helper()
	arch, err := api.LookupArchitecture(name)
	if err != nil {
		t.Fatal(err)
	}
	drawn, err := arch.New(t.Context(), cfg, api.BuildOptions{On: b, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := arch.New(t.Context(), cfg, api.BuildOptions{On: b, Zeros: true})
	if err != nil {
		t.Fatal(err)
	}
	want, got := drawn.(api.LocalModel).Parameters(), empty.(api.LocalModel).Parameters()
	if len(got) != len(want) {
		t.Fatalf("%s: %d parameters uninitialised, %d drawn", name, len(got), len(want))
	}
	for i, p := range got {
		w := want[i]
		if p.Name != w.Name || !p.Value.Shape().Equal(w.Value.Shape()) || p.Value.DType() != w.Value.DType() {
			t.Errorf("%s: parameter %d is %s %v %v, drawn %s %v %v", name, i,
				p.Name, p.Value.Shape(), p.Value.DType(), w.Name, w.Value.Shape(), w.Value.DType())
			continue
		}
		for j, v := range api.Float32s(p.Value) {
			if v != 0 {
				t.Errorf("%s: %s[%d] = %v, want 0", name, p.Name, j, v)
				break
			}
		}
	}
}

// CheckParameterCount checks that est.Parameters is the sum of the element
// counts of m's parameters and est.WeightBytes their bytes in float32.
func CheckParameterCount(t testing.TB, what string, m api.Model, est api.MemoryEstimate) {
	t.Helper()
	var n int64
	for _, p := range m.Params() {
		n += int64(p.Shape.NumElements())
	}
	if est.Parameters != n || est.WeightBytes != 4*n {
		t.Errorf("%s: estimate of %d parameters (%d bytes), the model has %d", what, est.Parameters, est.WeightBytes, n)
	}
}

// CheckFiniteParameters fails t when a parameter of m holds a NaN or an
// infinity.
func CheckFiniteParameters(t testing.TB, what string, m api.LocalModel) {
	t.Helper()
	for _, p := range m.Parameters() {
		for i, v := range api.Float32s(p.Value) {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Errorf("%s: %s[%d] = %v", what, p.Name, i, v)
				break
			}
		}
	}
}

// MemoryRatios are the estimates of a memory estimate divided by what the
// passes allocated, as MeasureMemory measures them.
type MemoryRatios struct {
	Forward, Prefill, Train, State float64
}

// CheckTight logs the ratios of the model named name and fails t when an
// estimate is more than limit times what its pass allocates: an upper
// bound that loose would refuse work that fits.
func (r MemoryRatios) CheckTight(t testing.TB, name string, limit float64) {
	t.Helper()
	t.Logf("%-22s estimate/allocated: forward %.2f, prefill %.2f, train %.2f, state %.2f", name, r.Forward, r.Prefill, r.Train, r.State)
	for what, v := range map[string]float64{"forward": r.Forward, "prefill": r.Prefill, "train": r.Train, "state": r.State} {
		if v > limit {
			t.Errorf("%s: %s estimate is %.2f times what it allocates", name, what, v)
		}
	}
}

// WithField returns the JSON object base with the field at path (dotted
// for nested objects) set to the raw JSON value, for tests of config
// parsing.
func WithField(t testing.TB, base, path, value string) []byte {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal([]byte(base), &root); err != nil {
		t.Fatal(err)
	}
	obj := root
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := obj[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[k] = next
		}
		obj = next
	}
	obj[keys[len(keys)-1]] = json.RawMessage(value)
	out, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// allocated returns the bytes the Go heap allocates while fn runs, with the
// garbage collector off so that pooled scratch stays in its pools.
func allocated(fn func()) int64 {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// MeasureMemory runs Forward, Prefill (into a fresh State) and, when m is
// api.Trainable, LossAndGrad (after ZeroGrad) on random ids [batch,tokens]
// on a backend whose tensors are Go memory, each once to warm the
// backend's pools and then three times measured by the heap's TotalAlloc
// (the least counts: a run that misses the backend's scratch pools
// allocates the scratch again), and a State made and stepped once; it
// fails t when est does not bound what each allocates from above
// (ForwardBytes for Forward and Prefill, TrainBytes, StateBytes per
// sequence), and returns the ratios estimate/measured.
func MeasureMemory(t testing.TB, m api.Model, est api.MemoryEstimate, batch, tokens int) MemoryRatios {
	t.Helper()
	ctx := context.Background()
	ids := RandomIDs(rand.New(rand.NewPCG(5, 6)), batch, tokens, m.Config().Vocab())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var r MemoryRatios
	check := func(what string, estimate int64, run func()) float64 {
		t.Helper()
		run() // warm-up
		got := allocated(run)
		for range 2 { // the least of three: a pool miss is not the pass's
			got = min(got, allocated(run))
		}
		ratio := float64(estimate) / float64(got)
		if estimate < got {
			t.Errorf("%s of [%d,%d]: estimate %d bytes, allocated %d (ratio %.2f)", what, batch, tokens, estimate, got, ratio)
		}
		return ratio
	}
	r.Forward = check("Forward", est.ForwardBytes(batch, tokens), func() {
		_, err := m.Forward(ctx, ids, api.Form{})
		must(err)
	})
	var s api.State
	r.Prefill = check("Prefill", est.ForwardBytes(batch, tokens), func() {
		var err error
		if s == nil {
			s, err = m.NewState(batch)
			must(err)
		}
		s.Reset()
		_, err = m.Prefill(ctx, s, ids, api.Form{})
		must(err)
	})
	if tm, ok := m.(api.Trainable); ok {
		targets := RandomIDs(rand.New(rand.NewPCG(7, 8)), batch, tokens, m.Config().Vocab())
		tm.ZeroGrad()
		r.Train = check("LossAndGrad", est.TrainBytes(batch, tokens), func() {
			tm.ZeroGrad()
			_, err := tm.LossAndGrad(ctx, api.Batch{Inputs: ids, Targets: targets})
			must(err)
		})
	}
	r.State = check("NewState and a Step", est.StateBytes, func() {
		s, err := m.NewState(1)
		must(err)
		_, err = m.Step(ctx, s, []int32{ids[0][0]})
		must(err)
	})
	return r
}

// BenchDecode times decode Steps of one sequence on m after an untimed
// first step, and reports tokens/s.
func BenchDecode(b *testing.B, m api.Model) {
	ctx := context.Background()
	s, err := m.NewState(1)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ids := []int32{17}
	if _, err := m.Step(ctx, s, ids); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Step(ctx, s, ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
