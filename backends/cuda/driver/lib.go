package driver

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/densessm/densessm/api"
)

// LoadError is the error of a library that could not be loaded: none of
// the candidates opened (Tried says which, and why each failed), or the
// one that opened lacks symbols this package needs (Missing). It wraps
// api.ErrUnsupported: a machine without CUDA is an unsupported
// configuration, not a bug.
type LoadError struct {
	What    string    // "CUDA driver", "NVRTC", "cuBLAS", ...
	Tried   []Attempt // every candidate, in the order tried
	Path    string    // with Missing: the library that opened
	Missing []string  // symbols the library at Path lacks
}

// Attempt is one candidate a search tried and why it failed.
type Attempt struct {
	Path string // a file name for the dynamic loader's own search, or a path
	Err  string // the loader's message, without the path it repeats
}

func (e *LoadError) Error() string {
	if len(e.Missing) > 0 {
		return fmt.Sprintf("the %s at %s lacks %s (not that library, or an older version than this build needs)", e.What, e.Path, strings.Join(e.Missing, ", "))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "no %s found (looked for ", e.What)
	for i, a := range e.Tried {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.Path)
		if a.Err != "" && a.Err != errNoFile {
			fmt.Fprintf(&b, " [%s]", a.Err)
		}
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap makes errors.Is(err, api.ErrUnsupported) true.
func (e *LoadError) Unwrap() error { return api.ErrUnsupported }

// errNoFile is the Attempt.Err of a path that does not exist; the message
// lists such paths bare.
const errNoFile = "no such file"

// Library is one opened shared object.
type Library struct {
	Path   string // the candidate that opened
	what   string
	handle uintptr
}

// OpenFirst opens the first candidate that loads, or returns a LoadError
// for what ("CUDA driver", "NCCL library") listing every candidate. A candidate without a
// slash is a file name for the dynamic loader's own search (LD_LIBRARY_PATH,
// the ld.so cache, the default directories); one with a slash is a path,
// not handed to the loader when no such file exists but still listed, so
// that the error names every place that was looked at.
func OpenFirst(what string, candidates []string) (*Library, error) {
	le := &LoadError{What: what}
	seen := map[string]bool{}
	for _, c := range candidates {
		if c == "" || seen[c] {
			continue
		}
		seen[c] = true
		if strings.ContainsRune(c, '/') {
			if _, err := os.Stat(c); err != nil {
				le.Tried = append(le.Tried, Attempt{Path: c, Err: errNoFile})
				continue
			}
		}
		h, err := sysOpen(c)
		if err == nil {
			return &Library{what: what, Path: c, handle: h}, nil
		}
		msg := err.Error()
		msg = strings.TrimPrefix(msg, c+": ")
		le.Tried = append(le.Tried, Attempt{Path: c, Err: msg})
	}
	return nil, le
}

// Binding names a C function and the Go function variable it fills.
type Binding struct {
	Name     string
	Fptr     any  // pointer to a func variable
	Optional bool // absent in older libraries: left nil
}

// Bind resolves every binding once; the required ones that are missing
// make a LoadError that lists them all.
func (l *Library) Bind(bs []Binding) error {
	var missing []string
	for _, b := range bs {
		addr, err := sysSym(l.handle, b.Name)
		if err != nil || addr == 0 {
			if !b.Optional {
				missing = append(missing, b.Name)
			}
			continue
		}
		sysBind(b.Fptr, addr)
	}
	if len(missing) > 0 {
		return &LoadError{What: l.what, Path: l.Path, Missing: missing}
	}
	return nil
}

// EnvCandidates expands an environment variable naming a library file or
// a directory: a directory contributes the files below it whose names
// match one of names (directly, or in the subdirectories that pip wheels
// and toolkits use).
func EnvCandidates(env string, names []string, subdirs []string) []string {
	v := os.Getenv(env)
	if v == "" {
		return nil
	}
	fi, err := os.Stat(v)
	if err != nil || !fi.IsDir() {
		return []string{v} // a file, or a path that fails with its own message
	}
	return InDirs([]string{v}, append([]string{""}, subdirs...), names)
}

// InDirs lists dir/sub/name for every combination, directories first.
func InDirs(dirs, subdirs, names []string) []string {
	var out []string
	for _, d := range dirs {
		for _, s := range subdirs {
			for _, n := range names {
				out = append(out, filepath.Join(d, s, n))
			}
		}
	}
	return out
}

// SitePackages lists the Python package directories where pip puts the
// NVIDIA wheels (nvidia-cuda-nvrtc, nvidia-cublas): the active virtual
// environment, that of the python3 first on PATH (a virtual environment
// put on PATH without being activated, as PyTorch images do), the user's
// and the system's, newest Python first.
func SitePackages() []string {
	var pats []string
	for _, v := range []string{os.Getenv("VIRTUAL_ENV"), os.Getenv("CONDA_PREFIX"), pythonPrefix()} {
		if v != "" {
			pats = append(pats, filepath.Join(v, "lib", "python3*", "site-packages"))
		}
	}
	if h, err := os.UserHomeDir(); err == nil {
		pats = append(pats, filepath.Join(h, ".local", "lib", "python3*", "site-packages"))
	}
	pats = append(pats,
		"/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages",
		"/usr/lib/python3*/site-packages", "/usr/lib/python3/dist-packages", "/usr/lib/python3*/dist-packages")
	var out []string
	for _, p := range pats {
		m, _ := filepath.Glob(p)
		sort.Sort(sort.Reverse(sort.StringSlice(m)))
		out = append(out, m...)
	}
	return out
}

// pythonPrefix is the directory above the bin directory of the first
// python3 on PATH, as PATH names it (a virtual environment's python3 is a
// link to the system's, which must not be followed), or "".
func pythonPrefix() string {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, "python3")); err == nil && !fi.IsDir() {
			return filepath.Dir(filepath.Clean(dir))
		}
	}
	return ""
}

// cString reads the NUL-terminated C string at p (nil gives "").
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
