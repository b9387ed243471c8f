package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
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
