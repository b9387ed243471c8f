// Package kernels holds the CUDA C sources of the CUDA backend's own
// kernels (src/*.cu, embedded) and compiles them with NVRTC for a device's
// architecture, caching the images on disk.
//
// The sources are self-contained CUDA C++ (no toolkit headers): libnvrtc
// alone compiles them, so CI checks that every source compiles to PTX with
// the nvidia-cuda-nvrtc wheel's library and no GPU, and runs them on the CPU
// under the emulator of backends/cuda's tests (emu/; docs/cuda.md).
package kernels

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/internal/atomicfile"
)

//go:embed src/*.cu src/*.cuh
var srcFS embed.FS

// Source is one compilation unit: a .cu file and the extern "C" kernels
// it defines.
type Source struct {
	Name    string   // e.g. "scan.cu"
	Code    string   // the file's text
	Kernels []string // the names of its __global__ functions, in order
}

var kernelRE = regexp.MustCompile(`extern\s+"C"\s+__global__\s+(?:__launch_bounds__\([^)]*\)\s+)?void\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(`)

// Sources returns every embedded .cu file, sorted by name.
func Sources() []Source {
	names, _ := fs.Glob(srcFS, "src/*.cu")
	slices.Sort(names)
	out := make([]Source, 0, len(names))
	for _, n := range names {
		b, _ := srcFS.ReadFile(n)
		s := Source{Name: path.Base(n), Code: string(b)}
		for _, m := range kernelRE.FindAllStringSubmatch(s.Code, -1) {
			s.Kernels = append(s.Kernels, m[1])
		}
		out = append(out, s)
	}
	return out
}

// Headers returns the embedded headers (src/*.cuh) that the sources
// #include by name.
func Headers() []driver.Header {
	names, _ := fs.Glob(srcFS, "src/*.cuh")
	slices.Sort(names)
	out := make([]driver.Header, 0, len(names))
	for _, n := range names {
		b, _ := srcFS.ReadFile(n)
		out = append(out, driver.Header{Name: path.Base(n), Source: string(b)})
	}
	return out
}

// Target is what a source is compiled to: PTX for the virtual
// architecture compute_<Arch> (the driver's JIT compiles it for the device
// at load time, on any device of that capability or newer), or, when CUBIN
// is set, machine code for exactly sm_<Arch>.
type Target struct {
	Arch  int // compute capability, 10*major + minor: 80, 90, ...
	CUBIN bool
}

func (t Target) String() string {
	if t.CUBIN {
		return fmt.Sprintf("sm_%d", t.Arch)
	}
	return fmt.Sprintf("compute_%d", t.Arch)
}

// Options are the NVRTC options of a target. Fast-math is off: the kernels
// mirror the CPU backend's rounding as far as they can.
func Options(t Target) []string {
	return []string{"--gpu-architecture=" + t.String(), "--std=c++17", "--device-as-default-execution-space"}
}

// ChooseTarget picks how to build for a device of compute capability arch
// with an NVRTC that compiles for the real architectures archs: a CUBIN
// when NVRTC knows the device's architecture, otherwise PTX for the newest
// architecture NVRTC knows that the device runs (the driver's JIT then
// compiles it: the fallback for a device newer than the NVRTC).
func ChooseTarget(arch int, archs []int) (Target, error) {
	if slices.Contains(archs, arch) {
		return Target{Arch: arch, CUBIN: true}, nil
	}
	best := 0
	for _, a := range archs {
		if a <= arch && a > best {
			best = a
		}
	}
	if best == 0 {
		return Target{}, fmt.Errorf("%w: NVRTC compiles for %v, none of which runs on a device of compute capability %d.%d",
			api.ErrUnsupported, archs, arch/10, arch%10)
	}
	return Target{Arch: best}, nil
}

// CacheEnv names the directory of the compiled-kernel cache.
const CacheEnv = "DENSESSM_CUDA_CACHE"

// DefaultCacheDir is $DENSESSM_CUDA_CACHE, or densessm/cuda-kernels in the
// user's cache directory (~/.cache on Linux); "" when there is none.
func DefaultCacheDir() string {
	if v := os.Getenv(CacheEnv); v != "" {
		return v
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "densessm", "cuda-kernels")
}

// Compiler compiles the sources with one NVRTC, through a disk cache.
type Compiler struct {
	NVRTC *driver.NVRTC
	// Dir is the cache directory ("" for none). An entry's name holds the
	// source's name, the target and a hash of everything the output
	// depends on: the source, the headers, the options and NVRTC's
	// version, so a changed source or another NVRTC never reads a stale
	// image. Entries are written atomically; a cache that cannot be
	// written is not an error (the image is compiled again next time).
	Dir string
}

// Key is the cache key of a source for a target: a hash of the source,
// the headers, the options and the NVRTC version.
func (c *Compiler) Key(src Source, t Target) string {
	h := sha256.New()
	fmt.Fprintf(h, "densessm cuda kernels 1\x00nvrtc %d.%d\x00%s\x00%s\x00", c.NVRTC.Major, c.NVRTC.Minor, t, strings.Join(Options(t), "\x00"))
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00", src.Name, len(src.Code), src.Code)
	for _, hd := range Headers() {
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00", hd.Name, len(hd.Source), hd.Source)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CachePath is where the image of src for t is cached ("" without a cache).
func (c *Compiler) CachePath(src Source, t Target) string {
	if c.Dir == "" {
		return ""
	}
	ext := ".ptx"
	if t.CUBIN {
		ext = ".cubin"
	}
	return filepath.Join(c.Dir, strings.TrimSuffix(src.Name, ".cu")+"-"+t.String()+"-"+c.Key(src, t)[:24]+ext)
}

// Compile returns the image of src for t (PTX text or a CUBIN), from the
// cache when it is there, and reports whether it was. A compilation
// failure is a *driver.NVRTCError with the compiler's log.
func (c *Compiler) Compile(src Source, t Target) (image []byte, cached bool, err error) {
	p := c.CachePath(src, t)
	if p != "" {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return b, true, nil
		}
	}
	image, _, err = c.NVRTC.Compile(src.Name, src.Code, Headers(), Options(t), t.CUBIN)
	if err != nil {
		return nil, false, err
	}
	if p != "" {
		if os.MkdirAll(c.Dir, 0o755) == nil {
			_ = atomicfile.WriteFile(p, image)
		}
	}
	return image, false, nil
}
