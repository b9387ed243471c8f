package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/densessm/densessm/api"
)

// FuzzOpen opens arbitrary bytes as a safetensors file and reads every
// tensor. It must never panic, must fail only with ErrCorrupt or
// ErrUnsupported, and must not allocate more than a small multiple of the
// input's size (a forged header must not make it allocate what it claims).
//
//	go test ./checkpoint -run '^$' -fuzz FuzzOpen -fuzztime 5m
func FuzzOpen(f *testing.F) {
	f.Add(fixture(f))
	for _, v := range corruptVariants(f) {
		f.Add(v.data)
	}
	f.Add(q8Fixture(f))
	write := reusableFile(f, "fuzz.safetensors")
	f.Fuzz(func(t *testing.T, data []byte) {
		path := write(t, data)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		readAll(t, path)
		runtime.ReadMemStats(&after)
		// Parsing the header JSON costs a few dozen bytes per input byte;
		// Float32s at most 2 (an F16 element becomes 4 bytes).
		if alloc, limit := after.TotalAlloc-before.TotalAlloc, uint64(1<<20+256*len(data)); alloc > limit {
			t.Fatalf("allocated %d bytes for a %d-byte input", alloc, len(data))
		}
	})
}

// readAll opens path and reads every tensor, checking what it gets.
func readAll(t *testing.T, path string) {
	c, err := Open(path)
	if err != nil {
		if !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrUnsupported) {
			t.Fatalf("error of an unexpected class: %v", err)
		}
		return
	}
	defer c.Close()
	for _, info := range c.Tensors() {
		raw, err := c.Raw(info.Name)
		if err != nil || int64(len(raw)) != info.Size || info.Size != int64(info.DType.Bytes(info.Shape.NumElements())) {
			t.Fatalf("%q: %d raw bytes, Size %d, %s%v: %v", info.Name, len(raw), info.Size, info.DType, info.Shape, err)
		}
		vals, err := c.Float32s(info.Name)
		if decodable(info.DType) != (err == nil) || (err == nil && len(vals) != info.Shape.NumElements()) {
			t.Fatalf("%q: Float32s of %s%v gives %d values, %v", info.Name, info.DType, info.Shape, len(vals), err)
		}
	}
}

// reusableFile returns a function that rewrites one temporary file, called
// name, with a fuzz input and returns its path: one file per worker,
// rewritten in place, is much cheaper than creating or truncating a file
// per input, which matters when inputs are minimised.
func reusableFile(f *testing.F, name string) func(t *testing.T, data []byte) string {
	path := filepath.Join(f.TempDir(), name)
	file, err := os.Create(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { file.Close() })
	return func(t *testing.T, data []byte) string {
		t.Helper()
		if _, err := file.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		if err := file.Truncate(int64(len(data))); err != nil {
			t.Fatal(err)
		}
		return path
	}
}
