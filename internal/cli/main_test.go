package cli

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
)

const fixture = "../../checkpoint/testdata/mixed.safetensors"

func runCLI(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	return runCLIInput(t, "", args...)
}

func runCLIInput(t *testing.T, stdin string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errb bytes.Buffer
	status = Main(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), status
}

func TestVersionAndBackends(t *testing.T) {
	if out, _, st := runCLI(t, "version"); st != 0 || !strings.HasPrefix(out, "densessm ") {
		t.Errorf("version: %q, status %d", out, st)
	}
	if out, _, st := runCLI(t, "backends"); st != 0 || !strings.Contains(out, "cpu\n") {
		t.Errorf("backends: %q, status %d", out, st)
	}
	if _, _, st := runCLI(t, "archs"); st != 0 {
		t.Errorf("archs: status %d", st)
	}
}

func TestInspectFixture(t *testing.T) {
	out, errOut, st := runCLI(t, "inspect", "--json", fixture)
	if st != 0 {
		t.Fatalf("inspect --json: status %d, %s", st, errOut)
	}
	var rep inspectReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("inspect --json printed invalid JSON: %v\n%s", err, out)
	}
	want := map[string]string{"a.f32": "F32[3 5]", "b.f16": "F16[4]", "c.bf16": "BF16[2 3 2]", "d.scalar": "F32[]", "e.i64": "I64[2]"}
	if len(rep.Tensors) != len(want) || rep.Parameters != 15+4+12+1+2 {
		t.Errorf("got %d tensors and %d parameters: %s", len(rep.Tensors), rep.Parameters, out)
	}
	for _, ti := range rep.Tensors {
		if got := ti.DType + fmt.Sprint(ti.Shape); got != want[ti.Name] {
			t.Errorf("%s: got %s, want %s", ti.Name, got, want[ti.Name])
		}
	}
	text, _, st := runCLI(t, "inspect", fixture)
	if st != 0 || !strings.Contains(text, "c.bf16") || !strings.Contains(text, "5 tensors, 34 parameters") {
		t.Errorf("inspect text output:\n%s", text)
	}
}

// TestInspectCorrupt checks that each broken file gives a one-line error
// naming the file, status 1, and no Go panic or stack trace.
func TestInspectCorrupt(t *testing.T) {
	good, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	hlen := binary.LittleEndian.Uint64(good)
	header := string(good[8 : 8+hlen])
	withHeader := func(h string) []byte {
		out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(out, h...), good[8+hlen:]...)
	}
	cases := map[string][]byte{
		"truncated":       good[:len(good)-3],
		"header-too-long": append(binary.LittleEndian.AppendUint64(nil, uint64(len(good))), good[8:]...),
		"unknown-dtype":   withHeader(strings.Replace(header, `"F16"`, `"Q16"`, 1)),
		"huge-shape":      withHeader(strings.Replace(header, `"shape":[4]`, `"shape":[1099511627776,1099511627776]`, 1)),
		"not-json":        withHeader(strings.Repeat("x", len(header))),
		"empty":           {},
	}
	dir := t.TempDir()
	for name, data := range cases {
		path := filepath.Join(dir, name+".safetensors")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, errOut, st := runCLI(t, "inspect", path)
		if st != 1 || out != "" {
			t.Errorf("%s: status %d, stdout %q", name, st, out)
		}
		if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, path) ||
			strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine") {
			t.Errorf("%s: want one line naming the file, got %q", name, errOut)
		}
	}
	if _, errOut, st := runCLI(t, "inspect", filepath.Join(dir, "missing.safetensors")); st != 1 || !strings.Contains(errOut, "missing.safetensors") {
		t.Errorf("missing file: status %d, %q", st, errOut)
	}
}

// readNPY reads a float32 .npy file written by logits.
func readNPY(t *testing.T, path string) (shape string, data []float32) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw[:8]) != "\x93NUMPY\x01\x00" {
		t.Fatalf("%s: bad magic %q", path, raw[:8])
	}
	hl := int(binary.LittleEndian.Uint16(raw[8:]))
	if (10+hl)%64 != 0 {
		t.Errorf("header of %d bytes is not padded to 64", 10+hl)
	}
	header := string(raw[10 : 10+hl])
	i := strings.Index(header, "'shape': (")
	shape = header[i+10 : i+strings.Index(header[i:], ")")]
	body := raw[10+hl:]
	for j := 0; j+4 <= len(body); j += 4 {
		data = append(data, math.Float32frombits(binary.LittleEndian.Uint32(body[j:])))
	}
	return shape, data
}

func TestLogitsCommand(t *testing.T) {
	cfg := mamba.DefaultConfig(mamba.NameMamba)
	cfg.VocabSize, cfg.HiddenSize, cfg.NumHiddenLayers, cfg.IntermediateSize = 48, 16, 2, 32
	m, err := mamba.New(cfg, cpu.New(api.BackendOptions{Threads: 1}), 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := checkpoint.SaveModel(t.Context(), dir, m); err != nil {
		t.Fatal(err)
	}
	var results [][]float32
	for _, mode := range []string{"parallel", "recurrent", "chunkwise"} {
		out := filepath.Join(dir, mode+".npy")
		if _, errOut, st := runCLI(t, "logits", "--model", dir, "--ids", "0,12,7,47", "--mode", mode, "--chunk", "3", "--out", out); st != 0 {
			t.Fatalf("%s: status %d: %s", mode, st, errOut)
		}
		shape, data := readNPY(t, out)
		if shape != "4, 48" || len(data) != 4*48 {
			t.Fatalf("%s: shape (%s) with %d values", mode, shape, len(data))
		}
		results = append(results, data)
	}
	for k, mode := range []string{"recurrent", "chunkwise"} {
		for i := range results[0] {
			if d := math.Abs(float64(results[0][i] - results[k+1][i])); d > 1e-5*(1+math.Abs(float64(results[0][i]))) {
				t.Fatalf("logit %d: parallel %g, %s %g", i, results[0][i], mode, results[k+1][i])
			}
		}
	}
	if _, errOut, st := runCLI(t, "logits", "--model", dir, "--ids", "0,48", "--out", filepath.Join(dir, "x.npy")); st != 1 || !strings.Contains(errOut, "outside the vocabulary") {
		t.Errorf("out-of-vocabulary id: status %d, %q", st, errOut)
	}
	if _, errOut, st := runCLI(t, "logits", "--model", t.TempDir(), "--ids", "1", "--out", filepath.Join(dir, "x.npy")); st != 1 || !strings.Contains(errOut, "config.json") {
		t.Errorf("empty directory: status %d, %q", st, errOut)
	}
}
