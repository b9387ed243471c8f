package sysmem

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1000": 1000, "512MiB": 512 << 20, "8GB": 8e9, "1.5GiB": 3 << 29, "2 kib": 2048, "7b": 7, "3T": 3e12,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1GiB", "1XB", "nan", "1e30TiB", "1..2"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3 << 30: "3.0 GiB"} {
		if got := Format(in); got != want {
			t.Errorf("Format(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestMeminfo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	os.WriteFile(p, []byte("MemTotal:       24000000 kB\nMemAvailable:    1000 kB\n"), 0o644)
	if got, ok := meminfoAvailable(p); !ok || got != 1000*1024 {
		t.Errorf("got %d, %v", got, ok)
	}
	os.WriteFile(p, []byte("MemTotal: 1 kB\n"), 0o644)
	if _, ok := meminfoAvailable(p); ok {
		t.Error("a meminfo without MemAvailable was read")
	}
}

func TestAvailableOnLinux(t *testing.T) {
	got, ok := Available()
	if runtime.GOOS != "linux" {
		t.Skip("not Linux")
	}
	if !ok || got <= 0 {
		t.Errorf("Available() = %d, %v on Linux", got, ok)
	}
}
