package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

func TestMixedFixture(t *testing.T) {
	c, err := Open(filepath.Join("testdata", "mixed.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkExpectation(t, c, readExpectation(t, filepath.Join("testdata", "mixed.json")))
	if n := c.NumParameters(); n != 15+4+12+1+2 {
		t.Errorf("NumParameters = %d, want 34", n)
	}
	if (runtime.GOOS == "linux" || runtime.GOOS == "darwin") && !c.files[0].mapped {
		t.Error("the file was read, not mapped")
	}
	info, ok := c.Lookup("d.scalar")
	if !ok || info.Shape.Rank() != 0 || info.Size != 4 || info.File != c.Path() {
		t.Errorf("Lookup(d.scalar) = %+v, %v", info, ok)
	}
	raw, _ := c.Raw("d.scalar")
	if data := fixture(t); string(data[info.Offset:info.Offset+info.Size]) != string(raw) {
		t.Error("Offset does not locate the tensor in the file")
	}
	if _, ok := c.Lookup("nope"); ok {
		t.Error("Lookup of a missing tensor succeeded")
	}
	if _, err := c.Raw("nope"); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Raw(nope): %v", err)
	}
	if _, err := c.Float32s("nope"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Float32s(nope): %v", err)
	}
	// Callers get copies: changing them changes nothing.
	c.Tensors()[0].Shape[0] = 99
	c.Metadata()["format"] = "x"
	if info, _ := c.Lookup("a.f32"); info.Shape[0] != 3 || c.Metadata()["format"] != "pt" {
		t.Error("Tensors or Metadata alias the checkpoint's state")
	}
}

func TestOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SingleFileName), fixture(t), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkExpectation(t, c, readExpectation(t, filepath.Join("testdata", "mixed.json")))

	if _, err := Open(t.TempDir()); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing.safetensors")); !errors.Is(err, api.ErrNotFound) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestSharded(t *testing.T) {
	want := readExpectation(t, filepath.Join("testdata", "sharded", "expected.json"))
	for _, path := range []string{
		filepath.Join("testdata", "sharded"),
		filepath.Join("testdata", "sharded", IndexFileName),
	} {
		t.Run(path, func(t *testing.T) {
			c, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			checkExpectation(t, c, want)
			if len(c.files) != 2 {
				t.Fatalf("%d files open, want 2", len(c.files))
			}
			info, _ := c.Lookup("lm_head.weight")
			if filepath.Base(info.File) != "model-00002-of-00002.safetensors" {
				t.Errorf("lm_head.weight is in %s", info.File)
			}
			if n := c.NumParameters(); n != 6+3+3+6 {
				t.Errorf("NumParameters = %d, want 18", n)
			}
		})
	}
}

func TestClose(t *testing.T) {
	c, err := Open(filepath.Join("testdata", "mixed.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Raw("a.f32"); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Raw after Close: %v", err)
	}
	if _, err := c.Float32s("a.f32"); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Float32s after Close: %v", err)
	}
	if err := c.LoadInto(context.Background(), nil); !errors.Is(err, os.ErrClosed) {
		t.Errorf("LoadInto after Close: %v", err)
	}
}

// TestTruncatedWhileMapped shrinks a file under an open checkpoint: reading
// the lost data faults, which must come back as an error, not a crash.
func TestTruncatedWhileMapped(t *testing.T) {
	data := fixture(t)
	path := writeTemp(t, "m.safetensors", data)
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.files[0].mapped {
		t.Skip("the file is not memory-mapped on this platform")
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Float32s("a.f32"); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("Float32s of a truncated mapping: %v", err)
	}
	b := &hostBackend{}
	p := api.Parameter{Name: "a.f32", Value: b.Alloc(api.F32, 3, 5)}
	if err := c.LoadInto(context.Background(), []api.Parameter{p}); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("LoadInto from a truncated mapping: %v", err)
	}
}

func TestLoadInto(t *testing.T) {
	c, err := Open(filepath.Join("testdata", "mixed.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := &hostBackend{}
	params := []api.Parameter{
		{Name: "a.f32", Value: b.Alloc(api.F32, 3, 5)},
		{Name: "b.f16", Value: b.Alloc(api.F32, 4)},
		{Name: "c.bf16", Value: b.Alloc(api.F32, 2, 3, 2)},
		{Name: "d.scalar", Value: b.Alloc(api.F32)},
		{Name: "e.i64", Value: b.Alloc(api.F32, 2)},
		{Name: "c.bf16", Value: b.Alloc(api.BF16, 2, 3, 2)}, // same dtype: raw copy
		{Name: "b.f16", Value: b.Alloc(api.BF16, 4)},        // F16 -> F32 -> BF16
	}
	if err := c.LoadInto(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	for _, p := range params[:5] {
		want, _ := c.Float32s(p.Name)
		got := hostFloat32s(p.Value)
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s[%d] = %v, want %v", p.Name, i, got[i], want[i])
			}
		}
	}
	if raw, _ := c.Raw("c.bf16"); string(raw) != string(params[5].Value.(*hostTensor).data) {
		t.Error("BF16 into BF16 is not a byte copy")
	}
	f16, _ := c.Float32s("b.f16")
	bf := params[6].Value.(*hostTensor).data
	for i, v := range f16 {
		if got := api.Float32ToBFloat16(v); uint16(bf[2*i])|uint16(bf[2*i+1])<<8 != got {
			t.Errorf("b.f16[%d] as BF16 = %#x, want %#x", i, uint16(bf[2*i])|uint16(bf[2*i+1])<<8, got)
		}
	}
}

func TestLoadIntoErrors(t *testing.T) {
	c, err := Open(filepath.Join("testdata", "mixed.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := &hostBackend{}
	good := api.Parameter{Name: "a.f32", Value: b.Alloc(api.F32, 3, 5)}
	params := []api.Parameter{
		good,
		{Name: "missing.weight", Value: b.Alloc(api.F32, 2)},
		{Name: "b.f16", Value: b.Alloc(api.F32, 2, 2)},
		{Name: "d.scalar", Value: b.Alloc(api.I32)},
	}
	err = c.LoadInto(context.Background(), params)
	for _, want := range []struct {
		sentinel error
		text     string
	}{
		{api.ErrNotFound, `"missing.weight"`},
		{api.ErrShape, `"b.f16"`},
		{api.ErrDType, `"d.scalar"`},
	} {
		if !errors.Is(err, want.sentinel) || !strings.Contains(err.Error(), want.text) {
			t.Errorf("error %v: want %v naming %s", err, want.sentinel, want.text)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error of several lines: %q", err)
	}
	for _, v := range hostFloat32s(good.Value) {
		if v != 0 {
			t.Fatal("a failed LoadInto wrote into a parameter")
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.LoadInto(ctx, []api.Parameter{good}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}

	many := make([]api.Parameter, 25)
	for i := range many {
		many[i] = api.Parameter{Name: strings.Repeat("x", i+1), Value: b.Alloc(api.F32, 1)}
	}
	err = c.LoadInto(context.Background(), many)
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), `25 parameters have no tensor in the checkpoint: "x", "xx", "xxx" and 22 more`) {
		t.Errorf("25 missing tensors: %v", err)
	}
}

func TestFloat32sUnsupportedDType(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u8.safetensors")
	err := Write(t.Context(), path, []NamedTensor{{Name: "mask", DType: api.U8, Shape: api.Shape{3}, Data: []byte{1, 0, 1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Float32s("mask"); !errors.Is(err, api.ErrDType) || !strings.Contains(err.Error(), "mask") {
		t.Errorf("Float32s of U8: %v", err)
	}
	if raw, err := c.Raw("mask"); err != nil || string(raw) != "\x01\x00\x01" {
		t.Errorf("Raw of U8 = %v, %v", raw, err)
	}
}
