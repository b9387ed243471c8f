package mamba

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
)

// TestSaveLoadRoundTrip saves every variant and loads it back: the same
// architecture, the same logits.
func TestSaveLoadRoundTrip(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, b, 3)
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckSaveLoad(t, m, b)
		})
	}
}

// TestLoadOriginalNames loads a checkpoint in the state-spaces form: config
// with d_model/n_layer/ssm_cfg and backbone.embedding.weight.
func TestLoadOriginalNames(t *testing.T) {
	ctx := context.Background()
	b := cpu.New(api.BackendOptions{Threads: 1})
	cfg := tinyConfig(NameMamba, "")
	m, _ := New(cfg, b, 4)
	dir := t.TempDir()
	var tensors []checkpoint.NamedTensor
	for _, p := range m.Parameters() {
		nt, err := checkpoint.FromParameter(p, api.F32)
		if err != nil {
			t.Fatal(err)
		}
		nt.Name = strings.Replace(nt.Name, "backbone.embeddings.", "backbone.embedding.", 1)
		tensors = append(tensors, nt)
	}
	if err := checkpoint.Write(context.Background(), filepath.Join(dir, "model.safetensors"), tensors, nil); err != nil {
		t.Fatal(err)
	}
	// vocab 100 padded to a multiple of 8 gives the 104 rows of the tiny model.
	orig := `{"d_model": 40, "n_layer": 3, "vocab_size": 100, "pad_vocab_size_multiple": 8,
		"ssm_cfg": {"d_state": 6, "dt_rank": 5}, "rms_norm": true, "tie_embeddings": true}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := checkpoint.LoadModel(ctx, dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Config().(*Config); got.VocabSize != 104 || got.TimeStepRank != 5 || got.IntermediateSize != 80 {
		t.Errorf("parsed %+v", got)
	}
	modeltest.SameLogits(t, m, loaded)
}

func TestLoadErrorsNameTheTensor(t *testing.T) {
	ctx := context.Background()
	b := cpu.New(api.BackendOptions{Threads: 1})
	m, _ := New(tinyConfig(NameMamba, ""), b, 4)
	write := func(t *testing.T, mutate func([]checkpoint.NamedTensor) []checkpoint.NamedTensor) string {
		dir := t.TempDir()
		if err := checkpoint.SaveModel(ctx, dir, m); err != nil {
			t.Fatal(err)
		}
		tensors, _ := checkpoint.FromParameters(m.Parameters(), api.F32)
		if err := checkpoint.Write(context.Background(), filepath.Join(dir, "model.safetensors"), mutate(tensors), nil); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	missing := write(t, func(ts []checkpoint.NamedTensor) []checkpoint.NamedTensor {
		var out []checkpoint.NamedTensor
		for _, nt := range ts {
			if nt.Name != "backbone.layers.1.mixer.x_proj.weight" {
				out = append(out, nt)
			}
		}
		return out
	})
	_, err := checkpoint.LoadModel(ctx, missing, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "backbone.layers.1.mixer.x_proj.weight") {
		t.Errorf("missing tensor: %v", err)
	}
	reshaped := write(t, func(ts []checkpoint.NamedTensor) []checkpoint.NamedTensor {
		for i, nt := range ts {
			if nt.Name == "backbone.layers.0.mixer.D" {
				ts[i].Shape = api.Shape{2, nt.Shape[0] / 2}
			}
		}
		return ts
	})
	_, err = checkpoint.LoadModel(ctx, reshaped, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if !errors.Is(err, api.ErrShape) || !strings.Contains(err.Error(), "backbone.layers.0.mixer.D") {
		t.Errorf("wrong shape: %v", err)
	}
}

func TestNewUninitialized(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	modeltest.CheckUninitialized(t, NameMamba, tinyConfig(NameMamba, ""), b)
	modeltest.CheckUninitialized(t, NameDenseMamba, tinyConfig(NameDenseMamba, TargetX), b)
	modeltest.CheckUninitialized(t, NameDenseMamba, tinyConfig(NameDenseMamba, TargetH), b)
}
