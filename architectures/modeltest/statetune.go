package modeltest

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// CheckStateTuning checks a model's api.StateTuner: from a random initial
// state at position 4, the loss StateLossAndGrad reports is the cross-entropy of the
// logits Prefill gives from that state, and the recurrent form continues
// from it as the parallel form does (so a state learnt in training decodes
// as it was trained); its gradients match central finite differences of
// the loss; documents of a packed batch each start from the state; the
// weights' gradients stay untouched; and from an empty state the loss is
// LossAndGrad's (when the model tunes a state at position 0).
func CheckStateTuning(t *testing.T, m api.StateTuner) {
	t.Helper()
	ctx := context.Background()
	saver := m.(api.StateSaver)
	V := m.Config().Vocab()
	r := rand.New(rand.NewPCG(11, 12))
	init := must(m.NewState(1))
	snap := must(saver.SaveState(ctx, init))
	for i := range snap.Tensors {
		d := snap.Tensors[i].Data
		for k := 0; k < len(d); k += 4 {
			binary.LittleEndian.PutUint32(d[k:], math.Float32bits(float32(r.NormFloat64()*0.3)))
		}
	}
	snap.Tokens = 4
	if err := saver.LoadState(ctx, init, snap); err != nil {
		t.Fatal(err)
	}

	// The loss of one row is the cross-entropy of Prefill's logits from
	// the state; stepping from it gives the same logits.
	in, tg := RandomIDs(r, 1, 9, V)[0], RandomIDs(r, 1, 9, V)[0]
	loss, grads, err := m.StateLossAndGrad(ctx, init, api.Batch{Inputs: [][]int32{in}, Targets: [][]int32{tg}})
	if err != nil {
		t.Fatal(err)
	}
	s := must(api.CopyState(ctx, m, init))
	prefill := Values(t, "prefill from the state", must(m.Prefill(ctx, s, [][]int32{in}, api.Form{})), api.Shape{1, len(in), V})
	if e := RelErr([]float32{float32(loss)}, []float32{float32(crossEntropy(prefill, tg, V))}); e > 1e-5 {
		t.Fatalf("state-tuning loss %.7g, cross-entropy of Prefill from the state %.7g", loss, crossEntropy(prefill, tg, V))
	}
	s = must(api.CopyState(ctx, m, init))
	steps := Values(t, "steps from the state", must(api.RunRecurrent(ctx, m, s, [][]int32{in})), api.Shape{1, len(in), V})
	CheckLogits(t, "steps against prefill from a tuned state", steps, prefill, 1e-5)

	// Central finite differences of the loss in a few elements of each
	// tensor.
	const eps = 1e-2
	lossAt := func(tensor, k int, delta float32) float64 {
		snap := must(saver.SaveState(ctx, init))
		d := snap.Tensors[tensor].Data[4*k:]
		binary.LittleEndian.PutUint32(d, math.Float32bits(math.Float32frombits(binary.LittleEndian.Uint32(d))+delta))
		probe := must(m.NewState(1))
		if err := saver.LoadState(ctx, probe, snap); err != nil {
			t.Fatal(err)
		}
		l, _, err := m.StateLossAndGrad(ctx, probe, api.Batch{Inputs: [][]int32{in}, Targets: [][]int32{tg}})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for i, g := range grads {
		if g.Name != snap.Tensors[i].Name || len(g.Data) != len(snap.Tensors[i].Data) {
			t.Fatalf("gradient %d is %s of %d bytes, the state's tensor %s of %d", i, g.Name, len(g.Data), snap.Tensors[i].Name, len(snap.Tensors[i].Data))
		}
		vals := floats(g.Data)
		scale := 0.0
		for _, v := range vals {
			scale = max(scale, math.Abs(float64(v)))
		}
		if scale == 0 {
			t.Fatalf("the gradient of %s is zero", g.Name)
		}
		for range 3 {
			k := r.IntN(len(vals))
			fd := (lossAt(i, k, eps) - lossAt(i, k, -eps)) / (2 * eps)
			if d := math.Abs(fd - float64(vals[k])); d > 2e-2*scale+1e-4 {
				t.Fatalf("gradient of %s[%d]: %.6g, finite differences %.6g (largest %.3g)", g.Name, k, vals[k], fd, scale)
			}
		}
	}

	// A packed batch: every document starts from the state.
	batch := api.Batch{Inputs: [][]int32{append(append([]int32(nil), in...), in[:5]...)}, Targets: [][]int32{append(append([]int32(nil), tg...), tg[:5]...)}, Starts: [][]int{{len(in)}}}
	two := must2(m.StateLossAndGrad(ctx, init, api.Batch{Inputs: [][]int32{in[:5]}, Targets: [][]int32{tg[:5]}}))
	packed := must2(m.StateLossAndGrad(ctx, init, batch))
	if want := (loss*float64(len(in)) + two*5) / float64(len(in)+5); math.Abs(packed-want) > 1e-5*want {
		t.Fatalf("packed state-tuning loss %.7g, its documents from the state %.7g", packed, want)
	}

	tr, ok := m.(api.Trainable)
	if !ok {
		return
	}
	tr.ZeroGrad()
	empty := must(m.NewState(1))
	fromEmpty, _, err := m.StateLossAndGrad(ctx, empty, api.Batch{Inputs: [][]int32{in}, Targets: [][]int32{tg}})
	if errors.Is(err, api.ErrConfig) {
		return // a state at position 0 has no part in the model's output
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range tr.Grads() {
		for _, v := range api.Float32s(g.Value) {
			if v != 0 {
				t.Fatalf("state tuning changed the gradient of %s", g.Name)
			}
		}
	}
	plain := must(tr.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{in}, Targets: [][]int32{tg}}))
	tr.ZeroGrad()
	if math.Abs(plain-fromEmpty) > 1e-6*plain {
		t.Fatalf("loss from an empty state %.7g, LossAndGrad's %.7g", fromEmpty, plain)
	}
}

// crossEntropy returns the mean negative log-likelihood of targets under
// logits [T,V], in float64.
func crossEntropy(logits []float32, targets []int32, V int) float64 {
	var sum float64
	for i, y := range targets {
		z := logits[i*V : (i+1)*V]
		mx := math.Inf(-1)
		for _, v := range z {
			mx = math.Max(mx, float64(v))
		}
		var e float64
		for _, v := range z {
			e += math.Exp(float64(v) - mx)
		}
		sum += mx + math.Log(e) - float64(z[y])
	}
	return sum / float64(len(targets))
}

// floats reads little-endian float32 values.
func floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// must2 returns the first of three results, panicking on the error.
func must2[A, B any](a A, _ B, err error) A {
	if err != nil {
		panic(err)
	}
	return a
}
