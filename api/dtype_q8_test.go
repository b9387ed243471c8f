package api

import (
	"errors"
	"math"
	"testing"
)

// TestQ8Block checks the Q8_0 storage: sizes, the quantization of a block
// as llama.cpp's quantize_row_q8_0 does it, and decoding.
func TestQ8Block(t *testing.T) {
	if Q8_0.Size() != 0 || Q8_0.Block() != 32 || F32.Block() != 1 || Q8_0.Bytes(64) != 68 || Q8_0.Bytes(33) != -1 || BF16.Bytes(3) != 6 || Invalid.Bytes(1) != -1 {
		t.Fatalf("sizes: Size %d Block %d/%d Bytes %d %d %d %d", Q8_0.Size(), Q8_0.Block(), F32.Block(), Q8_0.Bytes(64), Q8_0.Bytes(33), BF16.Bytes(3), Invalid.Bytes(1))
	}
	x := make([]float32, 2*Q8Block) // a block of ramps, a block of zeros
	for i := range Q8Block {
		x[i] = float32(i-16) * 0.1 // largest magnitude 1.6, at i = 0
	}
	raw := make([]byte, Q8_0.Bytes(len(x)))
	if err := EncodeFloat32(raw, Q8_0, x); err != nil {
		t.Fatal(err)
	}
	d := Float16ToFloat32(uint16(raw[0]) | uint16(raw[1])<<8)
	if want := Float16ToFloat32(Float32ToFloat16(1.6 / 127)); d != want {
		t.Errorf("scale %v, want %v", d, want)
	}
	if q := int8(raw[2]); q != -127 {
		t.Errorf("the largest magnitude became %d, want -127", q)
	}
	for i := 2; i < Q8BlockBytes; i++ {
		// q = round(x / (amax/127)), half away from zero
		want := int8(math.Round(float64(x[i-2] * (1 / (float32(1.6) / 127)))))
		if int8(raw[i]) != want {
			t.Errorf("element %d: q %d, want %d", i-2, int8(raw[i]), want)
		}
	}
	for _, b := range raw[Q8BlockBytes:] {
		if b != 0 {
			t.Fatalf("a block of zeros stored %v", raw[Q8BlockBytes:])
		}
	}
	back := make([]float32, len(x))
	if err := DecodeFloat32(back, Q8_0, raw); err != nil {
		t.Fatal(err)
	}
	for i, v := range back {
		if e := math.Abs(float64(v - x[i])); e > 0.5*1.6/127+1e-3 {
			t.Errorf("element %d: %v decoded as %v", i, x[i], v)
		}
	}
	if err := EncodeFloat32(raw[:10], Q8_0, x); !errors.Is(err, ErrShape) {
		t.Errorf("encode into 10 bytes: %v, want ErrShape", err)
	}
}

// TestParseWeightDType checks the names --weights takes.
func TestParseWeightDType(t *testing.T) {
	for name, want := range map[string]DType{"f32": F32, "bf16": BF16, "q8": Q8_0, "Q8_0": Q8_0, "BF16": BF16} {
		if got, err := ParseWeightDType(name); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", name, got, err, want)
		}
	}
	for _, name := range []string{"", "q4", "f16", "int8"} {
		if _, err := ParseWeightDType(name); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%q: %v, want ErrUnsupported", name, err)
		}
	}
	if d, err := ParseDType("Q8_0"); err != nil || d != Q8_0 || WeightName(Q8_0) != "q8" || WeightName(F32) != "f32" {
		t.Errorf("ParseDType(Q8_0) = %v, %v; WeightName %q %q", d, err, WeightName(Q8_0), WeightName(F32))
	}
	if err := CheckWeights(I8); !errors.Is(err, ErrUnsupported) {
		t.Errorf("CheckWeights(I8): %v", err)
	}
}
