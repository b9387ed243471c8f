package checkpoint

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// refNonFinite counts the NaN and infinite elements of raw by decoding each
// one (F64 directly, the others through api.DecodeFloat32, which widens
// F16 and BF16 exactly).
func refNonFinite(t *testing.T, d api.DType, raw []byte) (nan, inf int) {
	t.Helper()
	var vals []float64
	if d == api.F64 {
		for i := 0; i+8 <= len(raw); i += 8 {
			vals = append(vals, math.Float64frombits(binary.LittleEndian.Uint64(raw[i:])))
		}
	} else {
		f := make([]float32, len(raw)/d.Size())
		if err := api.DecodeFloat32(f, d, raw); err != nil {
			t.Fatal(err)
		}
		for _, v := range f {
			vals = append(vals, float64(v))
		}
	}
	for _, v := range vals {
		switch {
		case math.IsNaN(v):
			nan++
		case math.IsInf(v, 0):
			inf++
		}
	}
	return nan, inf
}

// TestCountNonFinite checks every F16 and BF16 bit pattern, and F32 and F64
// values from special-heavy random draws, at every length modulo the
// 8-byte word, against decoding each value.
func TestCountNonFinite(t *testing.T) {
	all16 := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(all16[2*i:], uint16(i))
	}
	for _, d := range []api.DType{api.F16, api.BF16} {
		nan, inf := countNonFinite(d, all16)
		wn, wi := refNonFinite(t, d, all16)
		if nan != wn || inf != wi {
			t.Errorf("%s, all bit patterns: %d NaN, %d inf; want %d, %d", d, nan, inf, wn, wi)
		}
		if inf != 2 {
			t.Errorf("%s: %d infinities among all bit patterns", d, inf)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	special32 := []uint32{0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7f7fffff, 0x00000000, 0x80000000, 0x3f800000, 0x007fffff}
	special64 := []uint64{0x7ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000, 0x7ff0000000000001, 0x7fefffffffffffff, 0x3ff0000000000000, 0}
	for n := range 40 {
		b32 := make([]byte, 0, 4*n)
		b64 := make([]byte, 0, 8*n)
		b16 := make([]byte, 0, 2*n)
		for range n {
			v32 := r.Uint32()
			v64 := r.Uint64()
			if r.IntN(3) == 0 {
				v32 = special32[r.IntN(len(special32))]
				v64 = special64[r.IntN(len(special64))]
			}
			b32 = binary.LittleEndian.AppendUint32(b32, v32)
			b64 = binary.LittleEndian.AppendUint64(b64, v64)
			b16 = binary.LittleEndian.AppendUint16(b16, uint16(r.Uint32()|0x7c00*uint32(r.IntN(2))))
		}
		for _, tc := range []struct {
			d   api.DType
			raw []byte
		}{{api.F32, b32}, {api.F64, b64}, {api.F16, b16}, {api.BF16, b16}} {
			nan, inf := countNonFinite(tc.d, tc.raw)
			wn, wi := refNonFinite(t, tc.d, tc.raw)
			if nan != wn || inf != wi {
				t.Errorf("%s, %d values: %d NaN, %d inf; want %d, %d", tc.d, n, nan, inf, wn, wi)
			}
		}
	}
	if nan, inf := countNonFinite(api.I32, []byte{0, 0, 0x80, 0x7f}); nan+inf != 0 {
		t.Errorf("I32: %d, %d", nan, inf)
	}
}

func BenchmarkCountNonFinite(b *testing.B) {
	raw := make([]byte, 16<<20)
	for i := 0; i < len(raw); i += 4 {
		binary.LittleEndian.PutUint32(raw[i:], math.Float32bits(float32(i)))
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		countNonFinite(api.F32, raw)
	}
}
