package host

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/generate"
	"github.com/densessm/densessm/plugins/internal/wire"
	"github.com/densessm/densessm/train"
)

// tinyConfigs are small configurations of every built-in architecture.
var tinyConfigs = map[string]string{
	"mamba":       `{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "state_size": 8}`,
	"densemamba":  `{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 3, "state_size": 8}`,
	"retnet":      `{"vocab_size": 64, "decoder_embed_dim": 32, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 64, "decoder_layers": 2, "activation_fn": "swish"}`,
	"denseretnet": `{"vocab_size": 64, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 3}`,
}

// TestConformance runs every built-in architecture in process and through
// the CPU backend plugin and checks that the two models are the same model:
// the same parameters, logits in every form, recurrent steps, training
// steps (losses, gradient norms, weights and optimizer state after them)
// and sampled text, bit for bit.
func TestConformance(t *testing.T) {
	p := openPlugin(t, "densessm-backend-cpu", testOptions(t))
	for _, name := range []string{"mamba", "densemamba", "retnet", "denseretnet"} {
		t.Run(name, func(t *testing.T) {
			arch, err := api.LookupArchitecture(name)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := arch.ParseConfig([]byte(tinyConfigs[name]))
			if err != nil {
				t.Fatal(err)
			}
			threads := api.BackendOptions{Threads: 2}
			local, err := arch.New(t.Context(), cfg, api.BuildOptions{Backend: "cpu", BackendOptions: threads, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			remote, err := p.Architecture(name).New(t.Context(), cfg, api.BuildOptions{Backend: "cpu-plugin", BackendOptions: threads, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			defer remote.Close()
			checkSameModel(t, local, remote)
		})
	}
}

// checkSameModel is the conformance suite: want and got must behave as one
// model, bit for bit.
func checkSameModel(t *testing.T, want, got api.Model) {
	ctx := t.Context()
	wi, gi := want.Info(), got.Info()
	if wi.Arch != gi.Arch || !slices.Equal(wi.Modes, gi.Modes) || wi.Trainable != gi.Trainable || gi.Local {
		t.Fatalf("info: %+v, want %+v (and not local)", gi, wi)
	}
	if w, g := want.Params(), got.Params(); !slices.EqualFunc(w, g, func(a, b api.ParamInfo) bool {
		return a.Name == b.Name && a.DType == b.DType && a.Shape.Equal(b.Shape)
	}) {
		t.Fatalf("params differ: %d vs %d", len(w), len(g))
	}
	sameParams(t, "built", want, got)

	rng := rand.New(rand.NewPCG(1, 2))
	V := want.Config().Vocab()
	ids := func(b, n int) [][]int32 {
		out := make([][]int32, b)
		for i := range out {
			for range n {
				out[i] = append(out[i], int32(rng.IntN(V)))
			}
		}
		return out
	}
	seqs := ids(2, 7)
	for _, mode := range wi.Modes {
		f := api.Form{Mode: mode, Chunk: 3}
		w, err := want.Forward(ctx, seqs, f)
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.Forward(ctx, seqs, f)
		if err != nil {
			t.Fatal(err)
		}
		sameTensor(t, fmt.Sprintf("forward %s", mode), w, g)
	}

	ws, err := want.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := got.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Close()
	f := api.Form{Mode: api.Chunkwise}
	w, err := want.Prefill(ctx, ws, seqs, f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := got.Prefill(ctx, gs, seqs, f)
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, "prefill", w, g)
	for i := range 3 {
		next := []int32{int32(i), int32(V - 1 - i)}
		w, err := want.Step(ctx, ws, next)
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.Step(ctx, gs, next)
		if err != nil {
			t.Fatal(err)
		}
		sameTensor(t, fmt.Sprintf("step %d", i), w, g)
		if ws.Len() != gs.Len() {
			t.Errorf("step %d: state length %d, want %d", i, gs.Len(), ws.Len())
		}
	}
	if err := gs.Reset(); err != nil || gs.Len() != 0 {
		t.Errorf("reset: %v, length %d", err, gs.Len())
	}

	gen := generate.DefaultOptions()
	gen.MaxTokens, gen.Temperature, gen.TopK, gen.Seed = 12, 0.9, 20, 5
	prompts := ids(2, 4)
	wt, err := generate.Generate(ctx, want, prompts, gen, nil)
	if err != nil {
		t.Fatal(err)
	}
	gt, err := generate.Generate(ctx, got, prompts, gen, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(wt, gt, slices.Equal) {
		t.Errorf("sampled %v, want %v", gt, wt)
	}

	wst, err := train.Stepper(want)
	if err != nil {
		t.Fatal(err)
	}
	gst, err := train.Stepper(got)
	if err != nil {
		t.Fatal(err)
	}
	opt := train.DefaultOptimizer()
	for step := range 3 {
		var req api.TrainStepRequest
		for range 2 {
			seq := ids(2, 9)
			b := api.Batch{}
			for _, s := range seq {
				b.Inputs, b.Targets = append(b.Inputs, s[:8]), append(b.Targets, s[1:])
			}
			req.Batches = append(req.Batches, b)
		}
		req.Optimizer, req.LR, req.ClipNorm = opt, 3e-3, 0.5
		w, err := wst.TrainStep(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		g, err := gst.TrainStep(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if w != g {
			t.Errorf("train step %d: %+v, want %+v", step, g, w)
		}
	}
	sameParams(t, "trained", want, got)
	wo, err := wst.OptimizerState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gO, err := gst.OptimizerState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wo.Steps != gO.Steps || len(wo.Tensors) != len(gO.Tensors) || len(wo.Tensors) == 0 {
		t.Fatalf("optimizer state: %d steps %d tensors, want %d and %d", gO.Steps, len(gO.Tensors), wo.Steps, len(wo.Tensors))
	}
	for i := range wo.Tensors {
		if wo.Tensors[i].Name != gO.Tensors[i].Name || !bytes.Equal(wo.Tensors[i].Data, gO.Tensors[i].Data) {
			t.Fatalf("optimizer state %s differs", wo.Tensors[i].Name)
		}
	}
	if err := gst.SetOptimizerState(ctx, opt, wo); err != nil {
		t.Fatal(err)
	}

	// Writing parameters: the remote model takes the local one's values
	// after a change.
	vals, err := want.ReadParams(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range vals[0].Data {
		vals[0].Data[i] ^= 1
	}
	if err := want.WriteParams(ctx, vals[:1]); err != nil {
		t.Fatal(err)
	}
	if err := got.WriteParams(ctx, vals[:1]); err != nil {
		t.Fatal(err)
	}
	sameParams(t, "written", want, got)
}

func sameParams(t *testing.T, what string, want, got api.Model) {
	t.Helper()
	w, err := want.ReadParams(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := got.ReadParams(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != len(g) {
		t.Fatalf("%s: %d parameters, want %d", what, len(g), len(w))
	}
	for i := range w {
		if w[i].Name != g[i].Name || !bytes.Equal(w[i].Data, g[i].Data) {
			t.Fatalf("%s: parameter %s differs", what, w[i].Name)
		}
	}
}

func sameTensor(t *testing.T, what string, want, got api.Tensor) {
	t.Helper()
	if !want.Shape().Equal(got.Shape()) || !bytes.Equal(wire.TensorBytes(want), wire.TensorBytes(got)) {
		t.Fatalf("%s: logits %v differ from the in-process %v", what, got.Shape(), want.Shape())
	}
}
