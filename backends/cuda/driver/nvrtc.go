package driver

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
)

// NVRTC is the CUDA runtime compiler (libnvrtc), every function resolved
// once when it is loaded. It needs no GPU: CI compiles the kernel sources
// with the library of the nvidia-cuda-nvrtc wheel.
type NVRTC struct {
	Path         string // the library that was loaded
	Major, Minor int    // nvrtcVersion

	nvrtcVersion              func(major, minor *int32) int32
	nvrtcGetErrorString       func(r int32) string
	nvrtcGetNumSupportedArchs func(n *int32) int32
	nvrtcGetSupportedArchs    func(archs *int32) int32
	nvrtcCreateProgram        func(p *uintptr, src, name *byte, nh int32, headers, names **byte) int32
	nvrtcDestroyProgram       func(p *uintptr) int32
	nvrtcCompileProgram       func(p uintptr, nopts int32, opts **byte) int32
	nvrtcGetPTXSize           func(p uintptr, n *uintptr) int32
	nvrtcGetPTX               func(p uintptr, buf *byte) int32
	nvrtcGetCUBINSize         func(p uintptr, n *uintptr) int32
	nvrtcGetCUBIN             func(p uintptr, buf *byte) int32
	nvrtcGetProgramLogSize    func(p uintptr, n *uintptr) int32
	nvrtcGetProgramLog        func(p uintptr, buf *byte) int32
}

// NVRTCEnv names libnvrtc, or a directory holding it (a CUDA toolkit's
// lib64, a pip --target or site-packages directory with the
// nvidia-cuda-nvrtc wheel), to look at before the usual places.
const NVRTCEnv = "DENSESSM_NVRTC"

var nvrtcNames = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}

// The wheels' layouts: nvidia-cuda-nvrtc 13.x puts the library in
// nvidia/cu13/lib, the -cu12 wheels in nvidia/cuda_nvrtc/lib.
var nvrtcSubdirs = []string{"lib", "lib64", "nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib"}

// nvrtcCandidates is where LoadNVRTC looks, in order: DENSESSM_NVRTC (a
// file, or a directory searched as below), the dynamic loader's search
// for libnvrtc.so.13, .12 and .so, the CUDA toolkit's usual directories,
// then the NVIDIA wheels in Python's site-packages directories.
func nvrtcCandidates() []string {
	c := EnvCandidates(NVRTCEnv, nvrtcNames, nvrtcSubdirs)
	c = append(c, nvrtcNames...)
	c = append(c, InDirs(ToolkitDirs(), []string{""}, nvrtcNames)...)
	c = append(c, InDirs(SitePackages(), nvrtcSubdirs[2:], nvrtcNames)...)
	return c
}

// ToolkitDirs are the library directories of a CUDA toolkit install.
func ToolkitDirs() []string {
	var d []string
	for _, root := range []string{os.Getenv("CUDA_HOME"), os.Getenv("CUDA_PATH"), "/usr/local/cuda", "/opt/cuda"} {
		if root != "" {
			d = append(d, root+"/lib64", root+"/targets/x86_64-linux/lib", root+"/targets/sbsa-linux/lib")
		}
	}
	return d
}

// LoadNVRTC loads libnvrtc, once per process (the result is kept). When
// none is found the error is a *LoadError wrapping api.ErrUnsupported that
// lists every path tried.
func LoadNVRTC() (*NVRTC, error) {
	return nvrtcOnce()
}

var nvrtcOnce = sync.OnceValues(func() (*NVRTC, error) { return loadNVRTC(nvrtcCandidates()) })

func loadNVRTC(candidates []string) (*NVRTC, error) {
	lib, err := OpenFirst("NVRTC", candidates)
	if err != nil {
		return nil, err
	}
	n := &NVRTC{Path: lib.Path}
	err = lib.Bind([]Binding{
		{"nvrtcVersion", &n.nvrtcVersion, false},
		{"nvrtcGetErrorString", &n.nvrtcGetErrorString, false},
		{"nvrtcGetNumSupportedArchs", &n.nvrtcGetNumSupportedArchs, false},
		{"nvrtcGetSupportedArchs", &n.nvrtcGetSupportedArchs, false},
		{"nvrtcCreateProgram", &n.nvrtcCreateProgram, false},
		{"nvrtcDestroyProgram", &n.nvrtcDestroyProgram, false},
		{"nvrtcCompileProgram", &n.nvrtcCompileProgram, false},
		{"nvrtcGetPTXSize", &n.nvrtcGetPTXSize, false},
		{"nvrtcGetPTX", &n.nvrtcGetPTX, false},
		{"nvrtcGetCUBINSize", &n.nvrtcGetCUBINSize, false},
		{"nvrtcGetCUBIN", &n.nvrtcGetCUBIN, false},
		{"nvrtcGetProgramLogSize", &n.nvrtcGetProgramLogSize, false},
		{"nvrtcGetProgramLog", &n.nvrtcGetProgramLog, false},
	})
	if err != nil {
		return nil, err
	}
	var major, minor int32
	if r := n.nvrtcVersion(&major, &minor); r != 0 {
		return nil, n.err("nvrtcVersion", r)
	}
	n.Major, n.Minor = int(major), int(minor)
	return n, nil
}

// NVRTCError is a failed NVRTC call; a failed compilation carries the
// compiler's log.
type NVRTCError struct {
	Call string
	Code int32
	Msg  string // nvrtcGetErrorString
	Log  string // the program log of a compilation
}

func (e *NVRTCError) Error() string {
	s := fmt.Sprintf("nvrtc: %s: %s (%d)", e.Call, e.Msg, e.Code)
	if e.Log != "" {
		s += "\n" + strings.TrimRight(e.Log, "\n\x00")
	}
	return s
}

func (n *NVRTC) err(call string, r int32) *NVRTCError {
	return &NVRTCError{Call: call, Code: r, Msg: n.nvrtcGetErrorString(r)}
}

// SupportedArchs lists the real architectures (compute capability as
// 10*major + minor) this NVRTC compiles for.
func (n *NVRTC) SupportedArchs() ([]int, error) {
	var k int32
	if r := n.nvrtcGetNumSupportedArchs(&k); r != 0 {
		return nil, n.err("nvrtcGetNumSupportedArchs", r)
	}
	if k <= 0 {
		return nil, nil
	}
	a := make([]int32, k)
	if r := n.nvrtcGetSupportedArchs(&a[0]); r != 0 {
		return nil, n.err("nvrtcGetSupportedArchs", r)
	}
	out := make([]int, k)
	for i, v := range a {
		out[i] = int(v)
	}
	return out, nil
}

// Header is a source an #include "Name" resolves to.
type Header struct{ Name, Source string }

// Compile compiles one CUDA C++ source with the given options (e.g.
// --gpu-architecture=compute_90 for PTX, sm_90 for a CUBIN) and returns
// PTX text (without its trailing NUL) or, when cubin is true, a CUBIN
// image, with the compiler's log (warnings) either way. A failed
// compilation is an *NVRTCError holding the log.
func (n *NVRTC) Compile(name, src string, headers []Header, opts []string, cubin bool) (out []byte, log string, err error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	hsrc := make([]string, len(headers))
	hname := make([]string, len(headers))
	for i, h := range headers {
		hsrc[i], hname[i] = h.Source, h.Name
	}
	hs, hn, op := cStrings(hsrc, &pin), cStrings(hname, &pin), cStrings(opts, &pin)
	var prog uintptr
	if r := n.nvrtcCreateProgram(&prog, cStr(src), cStr(name), int32(len(headers)), first(hs), first(hn)); r != 0 {
		return nil, "", n.err("nvrtcCreateProgram", r)
	}
	defer n.nvrtcDestroyProgram(&prog)
	r := n.nvrtcCompileProgram(prog, int32(len(opts)), first(op))
	log = n.programLog(prog)
	if r != 0 {
		e := n.err("nvrtcCompileProgram("+name+")", r)
		e.Log = log
		return nil, log, e
	}
	sizeFn, getFn, what := n.nvrtcGetPTXSize, n.nvrtcGetPTX, "PTX"
	if cubin {
		sizeFn, getFn, what = n.nvrtcGetCUBINSize, n.nvrtcGetCUBIN, "CUBIN"
	}
	var size uintptr
	if r := sizeFn(prog, &size); r != 0 {
		return nil, log, n.err("nvrtcGet"+what+"Size", r)
	}
	if size == 0 {
		return nil, log, &NVRTCError{Call: "nvrtcGet" + what, Msg: "empty output", Log: log}
	}
	buf := make([]byte, size)
	if r := getFn(prog, &buf[0]); r != 0 {
		return nil, log, n.err("nvrtcGet"+what, r)
	}
	if !cubin {
		buf = []byte(strings.TrimRight(string(buf), "\x00"))
	}
	return buf, log, nil
}

func (n *NVRTC) programLog(prog uintptr) string {
	var size uintptr
	if n.nvrtcGetProgramLogSize(prog, &size) != 0 || size <= 1 {
		return ""
	}
	buf := make([]byte, size)
	if n.nvrtcGetProgramLog(prog, &buf[0]) != 0 {
		return ""
	}
	return strings.TrimRight(string(buf), "\x00")
}

// cStr returns a NUL-terminated copy of s (Go memory, valid during a call).
func cStr(s string) *byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return &b[0]
}

// cStrings returns NUL-terminated copies of ss as an array of pointers,
// each pinned, so that the array may be handed to C.
func cStrings(ss []string, pin *runtime.Pinner) []*byte {
	out := make([]*byte, len(ss))
	for i, s := range ss {
		out[i] = cStr(s)
		pin.Pin(out[i])
	}
	return out
}

func first(p []*byte) **byte {
	if len(p) == 0 {
		return nil
	}
	return &p[0]
}
