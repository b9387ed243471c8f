package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
)

const pytorchFixtures = "../../checkpoint/testdata/pytorch"

// sameTensors checks that got holds exactly want's tensors, with the same
// dtypes, shapes and bytes.
func sameTensors(t *testing.T, got, want *checkpoint.Checkpoint) {
	t.Helper()
	g, w := got.Tensors(), want.Tensors()
	if len(g) != len(w) {
		t.Fatalf("%d tensors, want %d", len(g), len(w))
	}
	for i := range w {
		if g[i].Name != w[i].Name || g[i].DType != w[i].DType || !g[i].Shape.Equal(w[i].Shape) {
			t.Fatalf("tensor %d is %q %s%v, want %q %s%v", i, g[i].Name, g[i].DType, g[i].Shape, w[i].Name, w[i].DType, w[i].Shape)
		}
		gr, err1 := got.Raw(g[i].Name)
		wr, err2 := want.Raw(w[i].Name)
		if err1 != nil || err2 != nil || !bytes.Equal(gr, wr) {
			t.Errorf("%s: bytes differ (%v, %v)", w[i].Name, err1, err2)
		}
	}
}

func openCheckpoint(t *testing.T, path string) *checkpoint.Checkpoint {
	t.Helper()
	c, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConvertFile converts a bare pytorch_model.bin, with every dtype and
// strided views, and a sharded one, to single safetensors files.
func TestConvertFile(t *testing.T) {
	for _, in := range []string{filepath.Join(pytorchFixtures, "model.bin"), filepath.Join(pytorchFixtures, "sharded")} {
		if st, _ := os.Stat(in); st != nil && st.IsDir() {
			in = filepath.Join(in, checkpoint.PyTorchIndexFileName)
		}
		out := filepath.Join(t.TempDir(), "out.safetensors")
		if _, errOut, st := runCLI(t, "convert", "--in", in, "--out", out); st != 0 {
			t.Fatalf("%s: status %d: %s", in, st, errOut)
		}
		got := openCheckpoint(t, out)
		sameTensors(t, got, openCheckpoint(t, in))
		if md := got.Metadata(); len(md) != 1 || md["format"] != "pt" {
			t.Errorf("metadata %v", md)
		}
		for _, ti := range got.Tensors() {
			if ti.Offset < 0 {
				t.Errorf("%s: offset %d in a safetensors file", ti.Name, ti.Offset)
			}
		}
	}
}

// TestConvertModel converts a transformers Mamba saved as pytorch_model.bin
// (tied embeddings: lm_head.weight shares the embedding's storage) and
// checks the result against the same weights written by the safetensors
// package.
func TestConvertModel(t *testing.T) {
	in := filepath.Join(pytorchFixtures, "mamba")
	out := t.TempDir()
	if _, errOut, st := runCLI(t, "convert", "--in", in, "--out", out); st != 0 {
		t.Fatalf("status %d: %s", st, errOut)
	}
	sameTensors(t, openCheckpoint(t, filepath.Join(out, checkpoint.SingleFileName)), openCheckpoint(t, filepath.Join(in, "expected.safetensors")))
	b := cpu.New(api.BackendOptions{Threads: 1})
	m, err := checkpoint.LoadModel(context.Background(), out, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if err != nil {
		t.Fatalf("converted model does not load: %v", err)
	}
	if m.Config() == nil || len(m.(api.LocalModel).Parameters()) == 0 {
		t.Error("converted model has no config or parameters")
	}
}

func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		text string
	}{
		{"evil pickle", []string{"--in", filepath.Join(pytorchFixtures, "evil.bin"), "--out", filepath.Join(dir, "evil.safetensors")}, "os.system is not allowed"},
		{"legacy format", []string{"--in", filepath.Join(pytorchFixtures, "legacy.bin"), "--out", filepath.Join(dir, "legacy.safetensors")}, "legacy"},
		{"missing input", []string{"--in", filepath.Join(dir, "nope.bin"), "--out", filepath.Join(dir, "nope.safetensors")}, "nope.bin"},
		{"directory without config", []string{"--in", dir, "--out", filepath.Join(dir, "o")}, "config.json"},
		{"arch with a file", []string{"--in", filepath.Join(pytorchFixtures, "model.bin"), "--out", filepath.Join(dir, "a.safetensors"), "--arch", "mamba"}, "--arch applies to a model directory"},
		{"file into a directory", []string{"--in", filepath.Join(pytorchFixtures, "model.bin"), "--out", dir}, "is a directory"},
		{"no --out", []string{"--in", dir}, `"out" not set`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, st := runCLI(t, append([]string{"convert"}, tc.args...)...)
			if st != 1 || out != "" || !strings.Contains(errOut, tc.text) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("status %d, stdout %q, stderr %q; want one line containing %q", st, out, errOut, tc.text)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed conversions left %d files behind", len(entries))
	}
}

// TestConvertQ8 converts a model to q8 and checks that the file stores its
// weight matrices as 8-bit blocks, loads with q8 weights by default, and
// gives the same logits, bit for bit, as the f32 model quantized at load
// with --weights q8; and that a bad --weights is refused.
func TestConvertQ8(t *testing.T) {
	cfg := mamba.DefaultConfig(mamba.NameMamba)
	cfg.VocabSize, cfg.HiddenSize, cfg.NumHiddenLayers, cfg.IntermediateSize = 96, 64, 2, 128
	m, err := mamba.New(cfg, cpu.New(api.BackendOptions{Threads: 1}), 1)
	if err != nil {
		t.Fatal(err)
	}
	in, out := t.TempDir(), t.TempDir()
	if err := checkpoint.SaveModel(t.Context(), in, m); err != nil {
		t.Fatal(err)
	}
	if _, errOut, st := runCLI(t, "convert", "--in", in, "--out", out, "--dtype", "q8"); st != 0 {
		t.Fatalf("convert --dtype q8: status %d: %s", st, errOut)
	}
	c := openCheckpoint(t, filepath.Join(out, checkpoint.SingleFileName))
	if c.WeightDType() != api.Q8_0 {
		t.Errorf("the converted file says its weights are %s", c.WeightDType())
	}
	if ti, _ := c.Lookup("backbone.layers.0.mixer.in_proj.weight"); ti.DType != api.Q8_0 {
		t.Errorf("in_proj is %s, want Q8_0", ti.DType)
	}
	if ti, _ := c.Lookup("backbone.layers.0.mixer.A_log"); ti.DType != api.F32 {
		t.Errorf("A_log is %s, want F32", ti.DType)
	}
	logits := func(args ...string) []float32 {
		t.Helper()
		path := filepath.Join(t.TempDir(), "l.npy")
		if _, errOut, st := runCLI(t, append([]string{"logits", "--ids", "0,12,7,47,95", "--out", path}, args...)...); st != 0 {
			t.Fatalf("logits %v: status %d: %s", args, st, errOut)
		}
		_, data := readNPY(t, path)
		return data
	}
	quantized, converted := logits("--model", in, "--weights", "q8"), logits("--model", out)
	if !slices.Equal(quantized, converted) {
		t.Errorf("logits of the q8 file differ from those of the f32 model loaded with --weights q8")
	}
	if full := logits("--model", in); slices.Equal(full, quantized) {
		t.Errorf("--weights q8 gives the f32 logits")
	}
	if _, errOut, st := runCLI(t, "logits", "--model", in, "--ids", "1", "--weights", "q4", "--out", filepath.Join(out, "x.npy")); st != 1 || !strings.Contains(errOut, "--weights") {
		t.Errorf("--weights q4: status %d, %q", st, errOut)
	}
}
