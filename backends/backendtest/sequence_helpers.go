package backendtest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// Helpers shared by the sequence-op groups (sequence_*.go). Their names
// start with "seq" so that they cannot clash with the core-op groups'.

// seqNormals returns n standard normal values.
func seqNormals(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return v
}

// seqGarbage returns a tensor of the given shape filled with a value no
// correct kernel leaves in an output it overwrites, so that a kernel that
// accumulates into (or forgets part of) an output is caught.
func seqGarbage(b api.Backend, shape ...int) api.Tensor {
	v := make([]float64, api.Shape(shape).NumElements())
	for i := range v {
		v[i] = 1234.5
	}
	return upload(b, v, shape...)
}

// seqUploadOpt uploads v, or returns nil when v is nil (an absent input).
func seqUploadOpt(b api.Backend, v []float64, shape ...int) api.Tensor {
	if v == nil {
		return nil
	}
	return upload(b, v, shape...)
}

// seqGarbageIf returns seqGarbage(b, shape...) when want is true, else nil.
func seqGarbageIf(b api.Backend, want bool, shape ...int) api.Tensor {
	if !want {
		return nil
	}
	return seqGarbage(b, shape...)
}

// seqCat concatenates slices.
func seqCat(parts ...[]float64) []float64 {
	var out []float64
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// seqSliceAxis returns the window [start, start+n) of the middle axis of v
// viewed as [outer, size, inner].
func seqSliceAxis(v []float64, outer, size, inner, start, n int) []float64 {
	out := make([]float64, 0, outer*n*inner)
	for o := range outer {
		base := (o*size + start) * inner
		out = append(out, v[base:base+n*inner]...)
	}
	return out
}

// seqJoinAxis concatenates slices along the middle axis of [outer, size_i,
// inner] views, where size_i = len(parts[i]) / (outer*inner).
func seqJoinAxis(parts [][]float64, outer, inner int) []float64 {
	var out []float64
	for o := range outer {
		for _, p := range parts {
			n := len(p) / (outer * inner)
			out = append(out, p[o*n*inner:(o+1)*n*inner]...)
		}
	}
	return out
}

// seqSoftplus returns log(1+e^x) for each value.
func seqSoftplus(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Log1p(math.Exp(x))
	}
	return out
}

// seqDownloadOpt downloads t, or returns nil when t is nil.
func seqDownloadOpt(t api.Tensor) []float64 {
	if t == nil {
		return nil
	}
	return download(t)
}

// seqCheckGrad compares a kernel's gradient output with the finite
// difference estimate when the output was requested (got not nil).
func seqCheckGrad(t *testing.T, what string, got api.Tensor, want []float64) {
	t.Helper()
	if got == nil {
		return
	}
	checkRel(t, what, download(got), want, GradTol)
}
