package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fixture = "../../checkpoint/testdata/mixed.safetensors"

func runCLI(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errb bytes.Buffer
	status = run(args, &out, &errb)
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
