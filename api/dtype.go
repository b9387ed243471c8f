package api

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// DType is the element type of a tensor. Compute happens in F32; F16 and BF16
// are storage types that checkpoints may hold (widened on load); I32 holds
// token ids and targets; I64 exists because PyTorch and safetensors files use
// it for ids and buffers. BF16 and Q8_0 are also the types of weight
// matrices stored in low precision for inference (see Q8_0).
type DType uint8

// The element types. The zero value is Invalid so that a forgotten dtype is
// caught instead of silently meaning F32.
const (
	Invalid DType = iota
	F32
	F16
	BF16
	I32
	I64
	F64
	U8
	I8
	Bool
	// Q8_0 is block-quantized 8-bit storage, llama.cpp's q8_0 layout: the
	// elements, in order, form blocks of Q8Block (32); a block is stored as
	// its scale d, an IEEE half-precision float (2 bytes, little-endian),
	// then 32 signed bytes q, and element i of the block is d * q[i]
	// (34 bytes per 32 elements). A Q8_0 tensor's last axis is a multiple
	// of Q8Block, so that every row is whole blocks. Size is 0 for it: use
	// Bytes. It is not a safetensors dtype; checkpoint stores it as an I8
	// tensor and an F16 tensor of scales (docs/formats.md).
	Q8_0
)

// Q8Block is the number of elements in one block of Q8_0, and
// Q8BlockBytes the bytes it takes.
const (
	Q8Block      = 32
	Q8BlockBytes = 2 + Q8Block
)

var dtypeInfo = [...]struct {
	name string // safetensors spelling
	size int    // bytes per element
}{
	Invalid: {"INVALID", 0},
	F32:     {"F32", 4},
	F16:     {"F16", 2},
	BF16:    {"BF16", 2},
	I32:     {"I32", 4},
	I64:     {"I64", 8},
	F64:     {"F64", 8},
	U8:      {"U8", 1},
	I8:      {"I8", 1},
	Bool:    {"BOOL", 1},
	Q8_0:    {"Q8_0", 0},
}

// String returns the safetensors spelling of the dtype ("F32", "BF16", ...).
func (d DType) String() string {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size returns the number of bytes of one element, or 0 for Invalid, Q8_0
// (whose elements take a fractional number of bytes: see Bytes) and unknown
// values.
func (d DType) Size() int {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].size
	}
	return 0
}

// Block returns the number of elements that are stored together: Q8Block
// for Q8_0, 1 for the other defined types (0 for Invalid and unknown
// values). A tensor of d has a last axis that is a multiple of it.
func (d DType) Block() int {
	switch {
	case d == Q8_0:
		return Q8Block
	case d.Size() > 0:
		return 1
	}
	return 0
}

// Bytes returns the storage of n elements of d in bytes, or -1 when n is
// not a whole number of d's blocks (or d is Invalid or unknown).
func (d DType) Bytes(n int) int {
	switch {
	case d == Q8_0 && n%Q8Block == 0:
		return n / Q8Block * Q8BlockBytes
	case d.Size() > 0:
		return n * d.Size()
	}
	return -1
}

// Valid reports whether d is one of the defined element types.
func (d DType) Valid() bool { return d != Invalid && int(d) < len(dtypeInfo) }

// IsFloat reports whether d is a floating-point type (Q8_0, whose values
// are floats, included).
func (d DType) IsFloat() bool { return d == F32 || d == F16 || d == BF16 || d == F64 || d == Q8_0 }

// ParseDType returns the dtype with the given spelling: the safetensors
// one ("F32", "F16", "BF16", "I32", "I64", "F64", "U8", "I8", "BOOL"), or
// "Q8_0" (which no safetensors file holds: readers of such files refuse
// dtypes whose Block is not 1). An unknown name gives an error wrapping
// ErrUnsupported.
func ParseDType(name string) (DType, error) {
	for d := F32; int(d) < len(dtypeInfo); d++ {
		if dtypeInfo[d].name == name {
			return d, nil
		}
	}
	return Invalid, fmt.Errorf("dtype %q: %w", name, ErrUnsupported)
}

// Float16ToFloat32 widens an IEEE 754 half-precision value exactly.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// Subnormal half: value = mant * 2^-24, normalise into a float32.
	e := uint32(113)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// Float32ToFloat16 narrows to half precision with round-to-nearest-even,
// saturating to infinity and keeping NaN a NaN.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		half := mant >> shift
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is the right result
	}
	return sign | uint16(half)
}

// BFloat16ToFloat32 widens a bfloat16 value exactly.
func BFloat16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToBFloat16 narrows to bfloat16 with round-to-nearest-even, keeping
// NaN a NaN.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// DecodeFloat32 widens little-endian raw elements of dtype d (F32, F16, BF16,
// F64, I32, I64, Q8_0) into dst, which must hold the values raw stores
// (len(raw) == d.Bytes(len(dst))).
func DecodeFloat32(dst []float32, d DType, raw []byte) error {
	n := len(dst)
	if b := d.Bytes(n); b < 0 || len(raw) != b {
		return fmt.Errorf("decode %d %s values from %d bytes: %w", n, d, len(raw), ErrShape)
	}
	le := binary.LittleEndian
	switch d {
	case Q8_0:
		for blk := range n / Q8Block {
			b := raw[blk*Q8BlockBytes : (blk+1)*Q8BlockBytes]
			scale := Float16ToFloat32(le.Uint16(b))
			out := dst[blk*Q8Block : (blk+1)*Q8Block]
			for i, q := range b[2:] {
				out[i] = scale * float32(int8(q))
			}
		}
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = Float16ToFloat32(le.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BFloat16ToFloat32(le.Uint16(raw[2*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(le.Uint32(raw[4*i:])))
		}
	case I64:
		for i := range dst {
			dst[i] = float32(int64(le.Uint64(raw[8*i:])))
		}
	default:
		return fmt.Errorf("decode %s as float32: %w", d, ErrUnsupported)
	}
	return nil
}

// EncodeFloat32 narrows src into little-endian raw elements of dtype d (F32,
// F16, BF16, F64, Q8_0); raw must hold d.Bytes(len(src)) bytes. Q8_0 blocks
// are quantized as QuantizeQ8 does.
func EncodeFloat32(raw []byte, d DType, src []float32) error {
	if b := d.Bytes(len(src)); b < 0 || len(raw) != b {
		return fmt.Errorf("encode %d values as %s into %d bytes: %w", len(src), d, len(raw), ErrShape)
	}
	le := binary.LittleEndian
	switch d {
	case Q8_0:
		for blk := range len(src) / Q8Block {
			QuantizeQ8(raw[blk*Q8BlockBytes:(blk+1)*Q8BlockBytes], src[blk*Q8Block:(blk+1)*Q8Block])
		}
	case F32:
		for i, v := range src {
			le.PutUint32(raw[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			le.PutUint16(raw[2*i:], Float32ToFloat16(v))
		}
	case BF16:
		for i, v := range src {
			le.PutUint16(raw[2*i:], Float32ToBFloat16(v))
		}
	case F64:
		for i, v := range src {
			le.PutUint64(raw[8*i:], math.Float64bits(float64(v)))
		}
	default:
		return fmt.Errorf("encode float32 as %s: %w", d, ErrUnsupported)
	}
	return nil
}

// QuantizeQ8 stores the Q8Block values of x as one Q8_0 block in dst
// (Q8BlockBytes bytes), as llama.cpp's quantize_row_q8_0 does: the scale is
// d = max|x| / 127, rounded to half precision, and q[i] = round(x[i] / d)
// with the unrounded d (half away from zero), so that the largest value
// maps to ±127. A block of zeros has scale 0. Non-finite values are not
// expected (checkpoint loading refuses them).
func QuantizeQ8(dst []byte, x []float32) {
	x = x[:Q8Block]
	dst = dst[:Q8BlockBytes]
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var inv float32
	if d != 0 {
		inv = 1 / d
	}
	binary.LittleEndian.PutUint16(dst, Float32ToFloat16(d))
	for i, v := range x {
		dst[2+i] = byte(int8(math.Round(float64(v * inv))))
	}
}

// ParseWeightDType returns the dtype a user names for weight storage:
// "f32", "bf16" or "q8" (also their dtype spellings "F32", "BF16", "Q8_0",
// in any case). Anything else is an error wrapping ErrUnsupported.
func ParseWeightDType(name string) (DType, error) {
	switch strings.ToLower(name) {
	case "f32", "fp32", "float32":
		return F32, nil
	case "bf16", "bfloat16":
		return BF16, nil
	case "q8", "q8_0":
		return Q8_0, nil
	}
	return Invalid, fmt.Errorf("weights %q: want f32, bf16 or q8: %w", name, ErrUnsupported)
}

// WeightName returns the name ParseWeightDType reads for d: "f32", "bf16"
// or "q8".
func WeightName(d DType) string {
	switch d {
	case BF16:
		return "bf16"
	case Q8_0:
		return "q8"
	}
	return strings.ToLower(d.String())
}
