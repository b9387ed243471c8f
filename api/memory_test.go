package api

import (
	"math"
	"testing"
)

// TestWeightBytesFor checks MemoryEstimate.WeightBytesFor and
// InferenceBytesFor on hand-made estimates: the F32 figure for F32,
// Invalid and other dtypes, the matrices at 2 bytes (BF16) or in whole
// Q8_0 blocks, an estimate without matrix counts, and saturation.
func TestWeightBytesFor(t *testing.T) {
	// 1000 parameters: 960 in matrices, 640 of them in Q8_0-able ones.
	e := MemoryEstimate{Parameters: 1000, MatrixParameters: 960, Q8Parameters: 640, WeightBytes: 4000, StateBytes: 7,
		Forward: ActivationBytes{Fixed: 100, PerToken: 3}}
	huge := MemoryEstimate{Parameters: math.MaxInt64, MatrixParameters: math.MaxInt64 - 64, Q8Parameters: math.MaxInt64 / 2, WeightBytes: math.MaxInt64}
	for _, tc := range []struct {
		what      string
		got, want int64
	}{
		{"f32", e.WeightBytesFor(F32), 4000},
		{"invalid", e.WeightBytesFor(Invalid), 4000},
		{"f16 (not a weight storage)", e.WeightBytesFor(F16), 4000},
		{"bf16", e.WeightBytesFor(BF16), 40*4 + 960*2},
		{"q8", e.WeightBytesFor(Q8_0), 360*4 + 640/32*34},
		{"q8, a part block", MemoryEstimate{Parameters: 100, Q8Parameters: 40, WeightBytes: 400}.WeightBytesFor(Q8_0), 60*4 + 2*34},
		{"no matrix counts", MemoryEstimate{Parameters: 10, WeightBytes: 40}.WeightBytesFor(Q8_0), 40},
		{"no parameters counted", MemoryEstimate{WeightBytes: 40, MatrixParameters: 8}.WeightBytesFor(BF16), 40},
		{"huge bf16", huge.WeightBytesFor(BF16), math.MaxInt64},
		{"huge q8", huge.WeightBytesFor(Q8_0), math.MaxInt64},
		{"inference f32", e.InferenceBytesFor(F32, 2, 4), 4000 + 2*7 + 100 + 2*4*3},
		{"inference", e.InferenceBytes(2, 4), e.InferenceBytesFor(F32, 2, 4)},
		{"inference q8", e.InferenceBytesFor(Q8_0, 2, 4), 360*4 + 640/32*34 + 2*7 + 100 + 2*4*3},
		{"inference saturates", huge.InferenceBytesFor(Q8_0, 1, 1), math.MaxInt64},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.what, tc.got, tc.want)
		}
	}
}
