package nccl

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/densessm/densessm/backends/cuda/driver"
)

// The search helpers of backends/cuda/driver are unexported; these are
// small copies of them, making the same *driver.LoadError, so that a
// caller tells "no NCCL" from "no CUDA driver" by its What field only.

// errNoFile is the Attempt.Err of a path that does not exist (the
// message lists such paths bare, as driver's does).
const errNoFile = "no such file"

type library struct {
	path   string
	handle uintptr
}

// openFirst opens the first candidate that loads. A candidate without a
// slash goes to the dynamic loader's own search; one with a slash that
// does not exist is listed in the error without being handed to it.
func openFirst(candidates []string) (*library, error) {
	le := &driver.LoadError{What: "NCCL library"}
	seen := map[string]bool{}
	for _, c := range candidates {
		if c == "" || seen[c] {
			continue
		}
		seen[c] = true
		if strings.ContainsRune(c, '/') {
			if _, err := os.Stat(c); err != nil {
				le.Tried = append(le.Tried, driver.Attempt{Path: c, Err: errNoFile})
				continue
			}
		}
		h, err := sysOpen(c)
		if err == nil {
			return &library{path: c, handle: h}, nil
		}
		le.Tried = append(le.Tried, driver.Attempt{Path: c, Err: strings.TrimPrefix(err.Error(), c+": ")})
	}
	return nil, le
}

// binding names a C function and the Go function variable it fills.
type binding struct {
	name     string
	fptr     any
	optional bool // absent in older libraries: left nil
}

func (l *library) bind(bs []binding) error {
	var missing []string
	for _, b := range bs {
		addr, err := sysSym(l.handle, b.name)
		if err != nil || addr == 0 {
			if !b.optional {
				missing = append(missing, b.name)
			}
			continue
		}
		sysBind(b.fptr, addr)
	}
	if len(missing) > 0 {
		return &driver.LoadError{What: "NCCL library", Path: l.path, Missing: missing}
	}
	return nil
}

// Env names libnccl.so.2, or a directory holding it (searched directly
// and in lib, lib64 and nvidia/nccl/lib: an NCCL tarball, a pip --target
// directory, a site-packages directory with the nvidia-nccl-cu13 or -cu12
// wheel), to look at before the usual places.
const Env = "DENSESSM_NCCL"

var (
	names = []string{"libnccl.so.2"}
	// Both nvidia-nccl-cu12 and nvidia-nccl-cu13 (2.32.6 checked) put the
	// library in nvidia/nccl/lib.
	subdirs = []string{"lib", "lib64", "nvidia/nccl/lib"}
)

// candidates is where Load looks, in order: DENSESSM_NCCL, the dynamic
// loader's search for libnccl.so.2 (LD_LIBRARY_PATH, the ld.so cache:
// Debian's and Ubuntu's libnccl2 package), the CUDA toolkit's directories
// (where NCCL's tarball is often unpacked), then the wheels in Python's
// site-packages directories.
func candidates() []string {
	var c []string
	if v := os.Getenv(Env); v != "" {
		if fi, err := os.Stat(v); err == nil && fi.IsDir() {
			c = append(c, inDirs([]string{v}, append([]string{""}, subdirs...), names)...)
		} else {
			c = append(c, v) // a file, or a path that fails with its own message
		}
	}
	c = append(c, names...)
	c = append(c, inDirs(toolkitDirs(), []string{""}, names)...)
	return append(c, inDirs(sitePackages(), subdirs[2:], names)...)
}

func inDirs(dirs, subs, names []string) []string {
	var out []string
	for _, d := range dirs {
		for _, s := range subs {
			for _, n := range names {
				out = append(out, filepath.Join(d, s, n))
			}
		}
	}
	return out
}

// toolkitDirs are the library directories of a CUDA toolkit install.
func toolkitDirs() []string {
	var d []string
	for _, root := range []string{os.Getenv("CUDA_HOME"), os.Getenv("CUDA_PATH"), "/usr/local/cuda", "/opt/cuda"} {
		if root != "" {
			d = append(d, root+"/lib64", root+"/targets/x86_64-linux/lib", root+"/targets/sbsa-linux/lib")
		}
	}
	return d
}

// sitePackages lists the Python package directories where pip puts the
// NVIDIA wheels: the active virtual environment, conda's, the user's and
// the system's, newest Python first.
func sitePackages() []string {
	var pats []string
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		pats = append(pats, filepath.Join(v, "lib", "python3*", "site-packages"))
	}
	if v := os.Getenv("CONDA_PREFIX"); v != "" {
		pats = append(pats, filepath.Join(v, "lib", "python3*", "site-packages"))
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
