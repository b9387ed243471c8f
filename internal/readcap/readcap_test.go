package readcap

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

func TestFileWithinCap(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 511, 512, 513, 4096, 100000} {
		want := bytes.Repeat([]byte{'x'}, n)
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, max := range []int64{int64(n), int64(n) + 1, 1 << 20, math.MaxInt64} {
			got, err := File(path, max)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%d bytes, cap %d: got %d bytes, %v", n, max, len(got), err)
			}
		}
	}
}

func TestFileOverCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, make([]byte, 1025), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := File(path, 1024)
	if !errors.Is(err, api.ErrOutOfRange) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "1 KiB cap") {
		t.Errorf("1025 bytes with a 1 KiB cap: %v", err)
	}
	if _, err := File(path, 0); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("cap 0: %v", err)
	}
	if _, err := File(path, -1); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("negative cap: %v", err)
	}
}

// TestFileSparse refuses a huge (sparse, so cheap) file from its size,
// without reading or allocating it.
func TestFileSparse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 30
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Skipf("cannot make a %d-byte sparse file: %v", int64(size), err)
	}
	f.Close()
	allocs := testing.AllocsPerRun(1, func() {
		_, err = File(path, 16<<20)
	})
	if !errors.Is(err, api.ErrOutOfRange) || !strings.Contains(err.Error(), "68719476736 bytes") || !strings.Contains(err.Error(), "16 MiB cap") {
		t.Errorf("64 GiB sparse file: %v", err)
	}
	if allocs > 20 {
		t.Errorf("%v allocations to refuse a file from its size", allocs)
	}
}

// TestFileEndless reads a device that never ends up to the cap only.
func TestFileEndless(t *testing.T) {
	const dev = "/dev/zero"
	if _, err := os.Stat(dev); err != nil {
		t.Skipf("%s: %v", dev, err)
	}
	_, err := File(dev, 1<<20)
	if !errors.Is(err, api.ErrOutOfRange) || !strings.Contains(err.Error(), dev) || !strings.Contains(err.Error(), "1 MiB cap") {
		t.Errorf("%s: %v", dev, err)
	}
}

// TestFileDevice reads a character device that ends (/dev/null).
func TestFileDevice(t *testing.T) {
	const dev = "/dev/null"
	if _, err := os.Stat(dev); err != nil {
		t.Skipf("%s: %v", dev, err)
	}
	if got, err := File(dev, 10); err != nil || len(got) != 0 {
		t.Errorf("%s: %q, %v", dev, got, err)
	}
}

func TestFileNotAFile(t *testing.T) {
	dir := t.TempDir()
	_, err := File(dir, 1<<20)
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "is a directory") || !strings.Contains(err.Error(), dir) {
		t.Errorf("directory: %v", err)
	}
	missing := filepath.Join(dir, "missing.json")
	_, err = File(missing, 1<<20)
	if !errors.Is(err, api.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
}

func TestSizeText(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 bytes", 1: "1 byte", 1000: "1000 bytes", 1024: "1 KiB", 1536 << 10: "1536 KiB",
		16 << 20: "16 MiB", 64 << 20: "64 MiB", 3 << 30: "3 GiB", 5 << 40: "5 TiB", 1 << 50: "1024 TiB",
	} {
		if got := sizeText(n); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", n, got, want)
		}
	}
}
