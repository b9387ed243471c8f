package checkpoint

import (
	"encoding/binary"

	"github.com/densessm/densessm/api"
)

// countNonFinite returns how many of the little-endian elements in raw, of
// dtype d, are NaN and how many are infinite (for Q8_0: the elements of
// blocks whose scale is). Dtypes without such values
// (the integer ones) give zero counts. It reads each element once and
// allocates nothing; bytes without a non-finite value are skipped 32 at a
// time with a few word operations.
func countNonFinite(d api.DType, raw []byte) (nan, inf int) {
	switch d {
	case api.F32:
		return scanNonFinite(raw, 4, 0x7f800000, 0x007fffff)
	case api.F16:
		return scanNonFinite(raw, 2, 0x7c00, 0x03ff)
	case api.BF16:
		return scanNonFinite(raw, 2, 0x7f80, 0x007f)
	case api.F64:
		return scanNonFinite(raw, 8, 0x7ff00000_00000000, 0x000fffff_ffffffff)
	case api.Q8_0:
		// Only the scales can be non-finite; each counts for its block.
		for b := 0; b+api.Q8BlockBytes <= len(raw); b += api.Q8BlockBytes {
			n, i := countEach(raw[b:b+2], 2, 0x7c00, 0x03ff)
			nan, inf = nan+n*api.Q8Block, inf+i*api.Q8Block
		}
		return nan, inf
	}
	return 0, 0
}

// scanNonFinite counts the NaN and infinite elements of raw, whose elements
// are size bytes wide (2, 4 or 8) with the exponent bits exp (an element
// whose exponent bits are all set is NaN or infinite) and the mantissa bits
// mant (zero for an infinity).
//
// Words of 8 bytes are tested whole: with e the exponent bits repeated in
// each lane, y = w&e ^ e has a zero lane exactly where w has a non-finite
// element. A lane of y is zero or at least its lowest exponent bit, and
// below its sign bit, so subtracting 1 from each lane borrows only out of
// a zero lane, which then shows in that lane's sign bit.
func scanNonFinite(raw []byte, size int, exp, mant uint64) (nan, inf int) {
	var e, ones, signs uint64
	for i := 0; i < 8; i += size {
		e |= exp << (8 * i)
		ones |= 1 << (8 * i)
		signs |= 1 << (8*(i+size) - 1)
	}
	full := func(w uint64) uint64 {
		y := w&e ^ e
		return (y - ones) &^ y & signs
	}
	le := binary.LittleEndian
	for len(raw) >= 32 {
		if full(le.Uint64(raw))|full(le.Uint64(raw[8:]))|full(le.Uint64(raw[16:]))|full(le.Uint64(raw[24:])) != 0 {
			n, i := countEach(raw[:32], size, exp, mant)
			nan, inf = nan+n, inf+i
		}
		raw = raw[32:]
	}
	n, i := countEach(raw, size, exp, mant)
	return nan + n, inf + i
}

// countEach counts the NaN and infinite elements of raw one by one.
func countEach(raw []byte, size int, exp, mant uint64) (nan, inf int) {
	for ; len(raw) >= size; raw = raw[size:] {
		var v uint64
		switch size {
		case 2:
			v = uint64(binary.LittleEndian.Uint16(raw))
		case 4:
			v = uint64(binary.LittleEndian.Uint32(raw))
		default:
			v = binary.LittleEndian.Uint64(raw)
		}
		switch {
		case v&exp != exp:
		case v&mant != 0:
			nan++
		default:
			inf++
		}
	}
	return nan, inf
}
