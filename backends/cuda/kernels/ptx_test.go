package kernels

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updatePTX = flag.Bool("update-ptx", false, "rebuild the prebuilt PTX under ptx/ with NVRTC (make cuda-ptx)")

var ptxVersionRE = regexp.MustCompile(`(?m)^\.version (\d+\.\d+)$`)

// isaAtMost reports whether PTX ISA version v ("major.minor") is at most max.
func isaAtMost(v, max string) bool {
	var a, b, c, d int
	if _, err := fmt.Sscanf(v+" "+max, "%d.%d %d.%d", &a, &b, &c, &d); err != nil {
		return false
	}
	return a < c || a == c && b <= d
}

var ptxEntryRE = regexp.MustCompile(`(?m)^\.visible \.entry ([A-Za-z_][A-Za-z0-9_]*)\(`)

// TestPrebuiltPTX checks that every source has prebuilt PTX built from its
// current text and headers, with an entry for each of its kernels, and no
// file is left over from a source that is gone. It needs no NVRTC; with
// -update-ptx it rebuilds the files with NVRTC first.
func TestPrebuiltPTX(t *testing.T) {
	srcs := Sources()
	if *updatePTX {
		n := loadNVRTC(t)
		old, _ := filepath.Glob("ptx/*.ptx")
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll("ptx", 0o755); err != nil {
			t.Fatal(err)
		}
		for _, src := range srcs {
			img, _, err := n.Compile(src.Name, src.Code, Headers(), Options(PrebuiltTarget), false)
			if err != nil {
				t.Fatalf("%s: %v", src.Name, err)
			}
			if err := os.WriteFile(PrebuiltPath(src), StampPTX(src, img), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("rebuilt %d PTX files with NVRTC %d.%d for %s", len(srcs), n.Major, n.Minor, PrebuiltTarget)
	}
	names := map[string]bool{}
	for _, src := range srcs {
		names[PrebuiltPath(src)] = true
		var ptx []byte
		var err error
		if *updatePTX { // the embedded files are the ones compiled in, before the update
			ptx, err = os.ReadFile(PrebuiltPath(src))
			if err == nil && !bytes.HasPrefix(ptx, []byte(ptxStamp)) {
				t.Errorf("%s: no stamp", PrebuiltPath(src))
			}
		} else {
			ptx, err = Prebuilt(src)
		}
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		var entries []string
		for _, m := range ptxEntryRE.FindAllSubmatch(ptx, -1) {
			entries = append(entries, string(m[1]))
		}
		if strings.Join(entries, " ") != strings.Join(src.Kernels, " ") {
			t.Errorf("%s: entries %v, want the kernels %v", PrebuiltPath(src), entries, src.Kernels)
		}
		if !bytes.Contains(ptx, []byte(".target sm_80")) {
			t.Errorf("%s: not PTX for sm_80", PrebuiltPath(src))
		}
		version := "none"
		if m := ptxVersionRE.FindSubmatch(ptx); m != nil {
			version = string(m[1])
		}
		if !isaAtMost(version, PrebuiltISA) {
			t.Errorf("%s: PTX ISA %s, want at most %s (make cuda-ptx builds it with NVRTC 12.4)", PrebuiltPath(src), version, PrebuiltISA)
		}
	}
	files, _ := filepath.Glob("ptx/*.ptx")
	for _, f := range files {
		if !names[f] {
			t.Errorf("%s has no source (make cuda-ptx removes it)", f)
		}
	}
}

// A prebuilt file from another version of a source is refused.
func TestPrebuiltStale(t *testing.T) {
	src := Sources()[0]
	if _, err := Prebuilt(src); err != nil {
		t.Skipf("no fresh prebuilt PTX to start from: %v", err)
	}
	src.Code += "\n// changed\n"
	if _, err := Prebuilt(src); err == nil || !strings.Contains(err.Error(), "another version") {
		t.Fatalf("a changed source: %v", err)
	}
	src.Name = "missing.cu"
	if _, err := Prebuilt(src); err == nil || !strings.Contains(err.Error(), "no prebuilt PTX") {
		t.Fatalf("a missing source: %v", err)
	}
}
