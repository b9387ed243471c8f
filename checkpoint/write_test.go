package checkpoint

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

func TestWriteRoundTrip(t *testing.T) {
	f32 := make([]byte, 4*6)
	if err := api.EncodeFloat32(f32, api.F32, []float32{1, -0, float32(math.Inf(1)), float32(math.NaN()), 1e-45, math.MaxFloat32}); err != nil {
		t.Fatal(err)
	}
	tensors := []NamedTensor{
		{Name: "z.last", DType: api.F32, Shape: api.Shape{2, 3}, Data: f32},
		{Name: "a.half", DType: api.F16, Shape: api.Shape{3}, Data: []byte{0x00, 0x3c, 0xff, 0x7b, 0x01, 0x00}},
		{Name: "m.empty", DType: api.BF16, Shape: api.Shape{0, 4}, Data: nil},
		{Name: "s.scalar", DType: api.I64, Shape: api.Shape{}, Data: binary.LittleEndian.AppendUint64(nil, 1<<40)},
		{Name: "b.mask", DType: api.Bool, Shape: api.Shape{3}, Data: []byte{1, 0, 1}},
		{Name: `q."quoted"\name`, DType: api.U8, Shape: api.Shape{1}, Data: []byte{7}},
	}
	metadata := map[string]string{"format": "pt", "note": `with "quotes" and <tags>`}
	path := filepath.Join(t.TempDir(), "out.safetensors")
	if err := Write(t.Context(), path, tensors, metadata); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(data); n%8 != 0 || data[8+n-1] != ' ' && data[8+n-1] != '}' {
		t.Errorf("header length %d is not padded to 8 with spaces", n)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", st.Mode(), err)
	}
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	infos := c.Tensors()
	var prevEnd int64
	for i, info := range infos {
		if i > 0 && (infos[i-1].Name >= info.Name || info.Offset != prevEnd) {
			t.Errorf("tensor %q is not laid out in name order", info.Name)
		}
		prevEnd = info.Offset + info.Size
	}
	for _, want := range tensors {
		info, ok := c.Lookup(want.Name)
		if !ok || info.DType != want.DType || !info.Shape.Equal(want.Shape) {
			t.Fatalf("%q: %+v, %v", want.Name, info, ok)
		}
		raw, err := c.Raw(want.Name)
		if err != nil || string(raw) != string(want.Data) {
			t.Errorf("%q: bytes %v, want %v (%v)", want.Name, raw, want.Data, err)
		}
	}
	if md := c.Metadata(); len(md) != 2 || md["note"] != metadata["note"] {
		t.Errorf("metadata %v", md)
	}
}

// TestWriteMatchesReference rewrites a shard written by the Python
// safetensors package; for tensors whose name order is also the reference's
// order (dtype alignment, then name) the bytes must be identical.
func TestWriteMatchesReference(t *testing.T) {
	ref := filepath.Join("testdata", "sharded", "model-00001-of-00002.safetensors")
	c, err := Open(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var tensors []NamedTensor
	for _, info := range c.Tensors() {
		raw, err := c.Raw(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, NamedTensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	path := filepath.Join(t.TempDir(), "copy.safetensors")
	if err := Write(t.Context(), path, tensors, c.Metadata()); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(ref)
	got, _ := os.ReadFile(path)
	if string(got) != string(want) {
		t.Errorf("Write gives\n%q\nthe reference writer\n%q", got, want)
	}
}

func TestWriteInvalid(t *testing.T) {
	good := NamedTensor{Name: "w", DType: api.F32, Shape: api.Shape{2}, Data: make([]byte, 8)}
	for _, tc := range []struct {
		name     string
		tensors  []NamedTensor
		sentinel error
	}{
		{"duplicate", []NamedTensor{good, good}, api.ErrCorrupt},
		{"reserved name", []NamedTensor{{Name: "__metadata__", DType: api.F32, Shape: api.Shape{}, Data: make([]byte, 4)}}, api.ErrCorrupt},
		{"invalid dtype", []NamedTensor{{Name: "x", Shape: api.Shape{1}, Data: make([]byte, 4)}}, api.ErrDType},
		{"negative shape", []NamedTensor{{Name: "x", DType: api.F32, Shape: api.Shape{-1}}}, api.ErrShape},
		{"short data", []NamedTensor{{Name: "x", DType: api.F32, Shape: api.Shape{3}, Data: make([]byte, 8)}}, api.ErrShape},
		{"overflowing shape", []NamedTensor{{Name: "x", DType: api.F64, Shape: api.Shape{1 << 62}}}, api.ErrShape},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "model.safetensors")
			if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Write(t.Context(), path, tc.tensors, nil)
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tc.sentinel)
			}
			checkUntouched(t, dir, path)
		})
	}
}

// checkUntouched checks that path still holds "old" and that dir holds no
// other file.
func checkUntouched(t *testing.T, dir, path string) {
	t.Helper()
	if data, err := os.ReadFile(path); err != nil || string(data) != "old" {
		t.Errorf("target changed: %q, %v", data, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files left in the directory, want 1", len(entries))
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "model.safetensors")
	// A non-empty directory in the way makes the final rename fail.
	if err := os.MkdirAll(filepath.Join(target, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	tensors := []NamedTensor{{Name: "w", DType: api.F32, Shape: api.Shape{1}, Data: make([]byte, 4)}}
	if err := Write(t.Context(), target, tensors, nil); err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "model.safetensors" {
		t.Errorf("directory holds %v after a failed write", entries)
	}
	if err := Write(t.Context(), filepath.Join(dir, "missing", "x.safetensors"), tensors, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Write into a missing directory: %v", err)
	}
}

func TestWriteReplacesKeepingMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	tensors := []NamedTensor{{Name: "w", DType: api.F32, Shape: api.Shape{1}, Data: make([]byte, 4)}}
	if err := Write(t.Context(), path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() == 3 {
		t.Errorf("after replacing: %v, %v", st, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files in the directory, want 1", len(entries))
	}
}

func TestFromParameters(t *testing.T) {
	b := &hostBackend{}
	values := []float32{1, 0.1, -65504, 1e-8, 3.140625, float32(math.Inf(-1))}
	params := []api.Parameter{
		{Name: "w", Value: f32Tensor(b, values, 2, 3)},
		{Name: "h", Value: b.Alloc(api.F16, 2)},
	}
	for _, storage := range []api.DType{api.F32, api.F16, api.BF16, api.F64} {
		nt, err := FromParameter(params[0], storage)
		if err != nil {
			t.Fatal(err)
		}
		if nt.Name != "w" || nt.DType != storage || !nt.Shape.Equal(api.Shape{2, 3}) {
			t.Fatalf("%s: %+v", storage, nt)
		}
		want := make([]byte, len(values)*storage.Size())
		if err := api.EncodeFloat32(want, storage, values); err != nil {
			t.Fatal(err)
		}
		if string(nt.Data) != string(want) {
			t.Errorf("%s: bytes %v, want %v", storage, nt.Data, want)
		}
	}
	if _, err := FromParameter(params[1], api.F32); !errors.Is(err, api.ErrDType) || !strings.Contains(err.Error(), `"h"`) {
		t.Errorf("F16 parameter stored as F32: %v", err)
	}
	if _, err := FromParameter(params[0], api.I32); !errors.Is(err, api.ErrDType) {
		t.Errorf("F32 stored as I32: %v", err)
	}
	all, err := FromParameters(params, api.F16)
	if err != nil || len(all) != 2 || all[1].DType != api.F16 {
		t.Fatalf("FromParameters: %v, %v", all, err)
	}

	// Save and load back through a checkpoint.
	path := filepath.Join(t.TempDir(), "params.safetensors")
	if err := Write(t.Context(), path, all, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	back := api.Parameter{Name: "w", Value: b.Alloc(api.F32, 2, 3)}
	if err := c.LoadInto(t.Context(), []api.Parameter{back}); err != nil {
		t.Fatal(err)
	}
	for i, v := range hostFloat32s(back.Value) {
		if want := api.Float16ToFloat32(api.Float32ToFloat16(values[i])); math.Float32bits(v) != math.Float32bits(want) {
			t.Errorf("w[%d] = %v, want %v", i, v, want)
		}
	}
}
