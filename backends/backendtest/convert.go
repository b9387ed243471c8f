package backendtest

import (
	"math"
	"math/big"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() { register("Convert", testConvert) }

// The bit patterns below were worked out by hand from the IEEE 754 formats
// (half: 1+5+10 bits, bias 15; bfloat16: the top 16 bits of a float32) and
// cover exact values, the largest finite values, overflow, subnormals and
// ties (round half to even).

// f32ToF16Known maps float32 bit patterns to their half-precision bits.
var f32ToF16Known = []struct{ in, want uint32 }{
	{0x3f800000, 0x3c00}, // 1
	{0xc0200000, 0xc100}, // -2.5
	{0x477fe000, 0x7bff}, // 65504, the largest half
	{0x477fef00, 0x7bff}, // 65519, below the tie
	{0x477ff000, 0x7c00}, // 65520, tie between 65504 (odd) and 65536: +Inf
	{0x49742400, 0x7c00}, // 1e6 overflows
	{0xff800000, 0xfc00}, // -Inf
	{0x00000000, 0x0000}, // +0
	{0x80000000, 0x8000}, // -0
	{0x33800000, 0x0001}, // 2^-24, the smallest subnormal
	{0x33000000, 0x0000}, // 2^-25, tie between 0 and 2^-24: 0
	{0x33000001, 0x0001}, // just above 2^-25
	{0x33c00000, 0x0002}, // 3*2^-25, tie between 1 and 2 (ulps): 2
	{0x387fc000, 0x03ff}, // 1023*2^-24, the largest subnormal
	{0x387fe000, 0x0400}, // 2^-14 - 2^-25, tie: 2^-14 (even)
	{0x38800000, 0x0400}, // 2^-14, the smallest normal
	{0x3f801000, 0x3c00}, // 1+2^-11, tie: 1 (even)
	{0x3f803000, 0x3c02}, // 1+3*2^-11, tie: 1+2^-9 (even)
	{0x3f801001, 0x3c01}, // just above 1+2^-11
	{0x3dcccccd, 0x2e66}, // 0.1
	{0x00000001, 0x0000}, // the smallest float32 subnormal underflows
}

// f32ToBF16Known maps float32 bit patterns to their bfloat16 bits.
var f32ToBF16Known = []struct{ in, want uint32 }{
	{0x3f800000, 0x3f80}, // 1
	{0xc0200000, 0xc020}, // -2.5
	{0x477fe000, 0x4780}, // 65504 rounds up to 65536
	{0x3f808000, 0x3f80}, // tie: even
	{0x3f818000, 0x3f82}, // tie: even
	{0x3f808001, 0x3f81}, // above the tie
	{0x3f807fff, 0x3f80}, // below the tie
	{0x00000001, 0x0000}, // float32 subnormal rounds to 0
	{0x00008000, 0x0000}, // subnormal tie: even (0)
	{0x00018000, 0x0002}, // subnormal tie: even (2)
	{0x00010000, 0x0001}, // exact subnormal
	{0x80010000, 0x8001}, // negative subnormal
	{0x80000000, 0x8000}, // -0
	{0x7f7f7fff, 0x7f7f}, // the largest bfloat16
	{0x7f7fffff, 0x7f80}, // the largest float32 rounds to +Inf
	{0x7f800000, 0x7f80}, // +Inf
	{0xff800000, 0xff80}, // -Inf
}

// f64ToF32Known maps float64 values to float32 bits.
var f64ToF32Known = []struct {
	in   float64
	want uint32
}{
	{1, 0x3f800000},
	{-2.5, 0xc0200000},
	{1 + 0x1p-24, 0x3f800000},           // tie: even
	{1 + 3*0x1p-24, 0x3f800002},         // tie: even
	{1 + 0x1p-24 + 0x1p-50, 0x3f800001}, // above the tie
	{0x1p-149, 0x00000001},              // the smallest subnormal
	{0x1p-150, 0x00000000},              // tie: 0
	{3 * 0x1p-150, 0x00000002},          // tie: even
	{1e300, 0x7f800000},                 // overflow
	{-1e300, 0xff800000},
	{0.1, 0x3dcccccd},
	{math.Copysign(0, -1), 0x80000000},
}

// intToF32Known maps integers to float32 bits; they pass through both I32
// (when they fit) and I64.
var intToF32Known = []struct {
	in   int64
	want uint32
}{
	{0, 0},
	{1, 0x3f800000},
	{-1, 0xbf800000},
	{16777216, 0x4b800000},          // 2^24
	{16777217, 0x4b800000},          // tie: even
	{16777219, 0x4b800002},          // tie: even
	{math.MaxInt32, 0x4f000000},     // 2^31
	{math.MinInt32, 0xcf000000},     // -2^31
	{1<<60 + 1<<36 + 1, 0x5d800001}, // rounds up; float64 then float32 would give 2^60
	{math.MaxInt64, 0x5f000000},     // 2^63
	{math.MinInt64, 0xdf000000},     // -2^63
}

// refF16Bits rounds x to the nearest half-precision value (ties to even) by
// float64 arithmetic, independently of any bit-level encoder. NaN is not
// handled here: callers check NaN separately.
func refF16Bits(x float32) uint16 {
	v := float64(x)
	var sign uint16
	if math.Signbit(v) {
		sign, v = 0x8000, -v
	}
	if math.IsInf(v, 0) {
		return sign | 0x7c00
	}
	e := max(math.Ilogb(v), -14) // Ilogb(0) is very negative
	ulp := math.Ldexp(1, e-10)
	r := math.RoundToEven(v/ulp) * ulp
	switch {
	case r > 65504:
		return sign | 0x7c00
	case r < 0x1p-14:
		return sign | uint16(r/0x1p-24)
	}
	fr, ex := math.Frexp(r) // r = fr * 2^ex, fr in [0.5, 1)
	return sign | uint16(ex-1+15)<<10 | uint16((2*fr-1)*1024)
}

// refBF16Bits rounds x to the nearest bfloat16 value (ties to even) by
// float64 arithmetic. NaN is not handled here.
func refBF16Bits(x float32) uint16 {
	v := float64(x)
	if math.IsInf(v, 0) {
		return uint16(math.Float32bits(x) >> 16)
	}
	const maxBF16 = (2 - 0x1p-7) * 0x1p127
	e := max(math.Ilogb(math.Abs(v)), -126)
	ulp := math.Ldexp(1, e-7)
	r := math.RoundToEven(v/ulp) * ulp
	if math.Abs(r) > maxBF16 {
		r = math.Copysign(math.Inf(1), v)
	}
	return uint16(math.Float32bits(float32(r)) >> 16) // r is exact in float32
}

// refF16Value decodes half-precision bits by the formula of the format.
func refF16Value(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e, m := int(h>>10)&0x1f, float64(h&0x3ff)
	switch e {
	case 0:
		return s * m * 0x1p-24
	case 0x1f:
		if m == 0 {
			return s * math.Inf(1)
		}
		return math.NaN()
	}
	return s * (1 + m/1024) * math.Ldexp(1, e-15)
}

// convert runs Convert from a src tensor of dtype sd holding raw to a new
// dst tensor of dtype dd (pre-filled with garbage) and returns its bytes.
// dst gets a different shape of the same element count when n > 1.
func convert(b api.Backend, dd, sd api.DType, raw []byte) []byte {
	n := len(raw) / sd.Size()
	src := uploadRaw(b, sd, raw, n)
	dshape := []int{n}
	if n > 1 && n%2 == 0 {
		dshape = []int{2, n / 2}
	}
	dst := uploadRaw(b, dd, randBytes(newRand(uint64(n)), n*dd.Size()), dshape...)
	b.Convert(dst, src)
	return downloadRaw(dst)
}

// f32Raw encodes float32 bit patterns.
func f32Raw(bits []uint32) []byte {
	raw := make([]byte, 4*len(bits))
	for i, v := range bits {
		le.PutUint32(raw[4*i:], v)
	}
	return raw
}

// randF32Spread returns n float32 values of both signs spread over
// exponents from 2^-30 to 2^20 (so half-precision subnormals, normals and
// overflow all occur).
func randF32Spread(seed uint64, n int) []uint32 {
	r := newRand(seed)
	out := make([]uint32, n)
	for i := range out {
		v := float32(math.Ldexp(1+r.Float64(), r.IntN(51)-30))
		if r.IntN(2) == 0 {
			v = -v
		}
		out[i] = math.Float32bits(v)
	}
	return out
}

func testConvert(t *testing.T, b api.Backend) {
	runSub(t, "F32toF16", func(t *testing.T) {
		in := randF32Spread(11, 4000)
		for _, k := range f32ToF16Known {
			in = append(in, k.in)
		}
		got := convert(b, api.F16, api.F32, f32Raw(in))
		for i, v := range in {
			want := refF16Bits(math.Float32frombits(v))
			if g := le.Uint16(got[2*i:]); g != want {
				t.Errorf("F32 %#08x (%g) to F16: %#04x, want %#04x", v, math.Float32frombits(v), g, want)
			}
		}
		for i, k := range f32ToF16Known {
			if g := le.Uint16(got[2*(len(in)-len(f32ToF16Known)+i):]); uint32(g) != k.want {
				t.Errorf("F32 %#08x to F16: %#04x, want %#04x", k.in, g, k.want)
			}
		}
	})
	runSub(t, "F32toBF16", func(t *testing.T) {
		in := randF32Spread(12, 4000)
		r := newRand(13)
		for range 4000 { // arbitrary bit patterns, NaN excluded below
			in = append(in, r.Uint32())
		}
		for _, k := range f32ToBF16Known {
			in = append(in, k.in)
		}
		got := convert(b, api.BF16, api.F32, f32Raw(in))
		for i, v := range in {
			x := math.Float32frombits(v)
			if math.IsNaN(float64(x)) {
				continue // checked in the NaN case
			}
			if g, want := le.Uint16(got[2*i:]), refBF16Bits(x); g != want {
				t.Errorf("F32 %#08x (%g) to BF16: %#04x, want %#04x", v, x, g, want)
			}
		}
		for i, k := range f32ToBF16Known {
			if g := le.Uint16(got[2*(len(in)-len(f32ToBF16Known)+i):]); uint32(g) != k.want {
				t.Errorf("F32 %#08x to BF16: %#04x, want %#04x", k.in, g, k.want)
			}
		}
	})
	runSub(t, "NaN", func(t *testing.T) {
		nans := []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0x7fffffff, 0xff800100}
		h := convert(b, api.F16, api.F32, f32Raw(nans))
		bf := convert(b, api.BF16, api.F32, f32Raw(nans))
		for i, v := range nans {
			if g := le.Uint16(h[2*i:]); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
				t.Errorf("F32 NaN %#08x to F16: %#04x is not a NaN", v, g)
			}
			if g := le.Uint16(bf[2*i:]); g&0x7f80 != 0x7f80 || g&0x7f == 0 {
				t.Errorf("F32 NaN %#08x to BF16: %#04x is not a NaN", v, g)
			}
		}
	})
	runSub(t, "F16toF32/all", func(t *testing.T) {
		raw := make([]byte, 2<<16)
		want := make([]float64, 1<<16)
		for h := range 1 << 16 {
			le.PutUint16(raw[2*h:], uint16(h))
			want[h] = refF16Value(uint16(h))
		}
		checkExact(t, "F16 to F32", rawF32s(convert(b, api.F32, api.F16, raw)), want)
	})
	runSub(t, "BF16toF32/all", func(t *testing.T) {
		raw := make([]byte, 2<<16)
		want := make([]float64, 1<<16)
		for h := range 1 << 16 {
			le.PutUint16(raw[2*h:], uint16(h))
			want[h] = float64(math.Float32frombits(uint32(h) << 16)) // bfloat16 is the top half of a float32
		}
		checkExact(t, "BF16 to F32", rawF32s(convert(b, api.F32, api.BF16, raw)), want)
	})
	runSub(t, "F64toF32", func(t *testing.T) {
		r := newRand(14)
		var in []float64
		for range 3000 {
			in = append(in, math.Ldexp(r.Float64()-0.5, r.IntN(300)-150))
		}
		for _, k := range f64ToF32Known {
			in = append(in, k.in)
		}
		raw := make([]byte, 8*len(in))
		want := make([]float64, len(in))
		for i, v := range in {
			le.PutUint64(raw[8*i:], math.Float64bits(v))
			want[i] = float64(float32(v)) // Go's conversion rounds to nearest even
		}
		got := rawF32s(convert(b, api.F32, api.F64, raw))
		checkExact(t, "F64 to F32", got, want)
		for i, k := range f64ToF32Known {
			if g := math.Float32bits(float32(got[len(in)-len(f64ToF32Known)+i])); g != k.want {
				t.Errorf("F64 %v to F32: %#08x, want %#08x", k.in, g, k.want)
			}
		}
	})
	runSub(t, "F32toF64", func(t *testing.T) {
		in := append(randF32Spread(15, 2000), 0x80000000, 0x00000001, 0x7f7fffff, 0xff800000)
		got := convert(b, api.F64, api.F32, f32Raw(in))
		for i, v := range in {
			if g, want := math.Float64frombits(le.Uint64(got[8*i:])), float64(math.Float32frombits(v)); math.Float64bits(g) != math.Float64bits(want) {
				t.Errorf("F32 %#08x to F64: %v, want exactly %v", v, g, want)
			}
		}
	})
	runSub(t, "F32toF32", func(t *testing.T) {
		raw := f32Raw(randF32Spread(16, 100))
		checkBytes(t, "F32 to F32", convert(b, api.F32, api.F32, raw), raw)
	})
	runSub(t, "I32toF32", func(t *testing.T) {
		r := newRand(17)
		var in []int32
		for range 2000 {
			in = append(in, int32(r.Uint32()))
		}
		for _, k := range intToF32Known {
			if k.in == int64(int32(k.in)) {
				in = append(in, int32(k.in))
			}
		}
		raw := make([]byte, 4*len(in))
		want := make([]float64, len(in))
		for i, v := range in {
			le.PutUint32(raw[4*i:], uint32(v))
			want[i] = nearestF32(int64(v))
		}
		checkExact(t, "I32 to F32", rawF32s(convert(b, api.F32, api.I32, raw)), want)
	})
	runSub(t, "I64toF32", func(t *testing.T) {
		r := newRand(18)
		var in []int64
		for range 2000 {
			in = append(in, int64(r.Uint64())>>r.IntN(64))
		}
		for _, k := range intToF32Known {
			in = append(in, k.in)
		}
		raw := make([]byte, 8*len(in))
		want := make([]float64, len(in))
		for i, v := range in {
			le.PutUint64(raw[8*i:], uint64(v))
			want[i] = nearestF32(v)
		}
		got := rawF32s(convert(b, api.F32, api.I64, raw))
		checkExact(t, "I64 to F32", got, want)
		for i, k := range intToF32Known {
			if g := math.Float32bits(float32(got[len(in)-len(intToF32Known)+i])); g != k.want {
				t.Errorf("I64 %d to F32: %#08x, want %#08x", k.in, g, k.want)
			}
		}
	})
	runSub(t, "empty", func(t *testing.T) {
		for _, pair := range [][2]api.DType{{api.F16, api.F32}, {api.F32, api.BF16}, {api.F32, api.I64}} {
			dst := b.Alloc(pair[0], 0, 3)
			b.Convert(dst, b.Alloc(pair[1], 0))
		}
	})
}

// nearestF32 returns the float32 nearest to v (ties to even), computed
// exactly with math/big.
func nearestF32(v int64) float64 {
	f, _ := new(big.Float).SetInt64(v).Float32()
	return float64(f)
}

// rawF32s decodes little-endian float32 bytes.
func rawF32s(raw []byte) []float64 {
	out := make([]float64, len(raw)/4)
	for i := range out {
		out[i] = float64(math.Float32frombits(le.Uint32(raw[4*i:])))
	}
	return out
}
