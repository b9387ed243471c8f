package api

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DType is the element type of a tensor. Compute happens in F32; F16 and BF16
// are storage types that checkpoints may hold (widened on load); I32 holds
// token ids and targets; I64 exists because PyTorch and safetensors files use
// it for ids and buffers.
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
}

// String returns the safetensors spelling of the dtype ("F32", "BF16", ...).
func (d DType) String() string {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size returns the number of bytes of one element, or 0 for Invalid and
// unknown values.
func (d DType) Size() int {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].size
	}
	return 0
}

// Valid reports whether d is one of the defined element types.
func (d DType) Valid() bool { return d != Invalid && int(d) < len(dtypeInfo) }

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == F32 || d == F16 || d == BF16 || d == F64 }

// ParseDType returns the dtype with the given safetensors spelling
// ("F32", "F16", "BF16", "I32", "I64", "F64", "U8", "I8", "BOOL").
// An unknown name gives an error wrapping ErrUnsupported.
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
// F64, I32, I64) into dst, which must hold len(raw)/d.Size() values.
func DecodeFloat32(dst []float32, d DType, raw []byte) error {
	n := len(dst)
	if d.Size() == 0 || len(raw) != n*d.Size() {
		return fmt.Errorf("decode %d %s values from %d bytes: %w", n, d, len(raw), ErrShape)
	}
	le := binary.LittleEndian
	switch d {
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
// F16, BF16, F64); raw must hold len(src)*d.Size() bytes.
func EncodeFloat32(raw []byte, d DType, src []float32) error {
	if d.Size() == 0 || len(raw) != len(src)*d.Size() {
		return fmt.Errorf("encode %d values as %s into %d bytes: %w", len(src), d, len(raw), ErrShape)
	}
	le := binary.LittleEndian
	switch d {
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
