package api

import (
	"context"
	"errors"
	"math"
	"testing"
)

func TestFloat16Exhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := Float16ToFloat32(uint16(h))
		back := Float32ToFloat16(f)
		if math.IsNaN(float64(f)) {
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %#04x narrowed to non-NaN %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("%#04x -> %g -> %#04x", h, f, back)
		}
	}
}

func TestFloat16Rounding(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00}, {-2.5, 0xc100}, {65504, 0x7bff}, {65520, 0x7c00}, {1e9, 0x7c00},
		{5.960464477539063e-08, 0x0001}, // smallest subnormal
		{2.980232238769531e-08, 0x0000}, // half of it: ties to even (0)
		{8.940696716308594e-08, 0x0002}, // 1.5 ulp: ties to even (2)
		{1 + 1.0/2048, 0x3c00},          // tie between 1 and next: even
		{1 + 3.0/2048, 0x3c02},          // tie: rounds up to even
		{float32(math.Inf(-1)), 0xfc00},
	} {
		if got := Float32ToFloat16(tc.in); got != tc.want {
			t.Errorf("Float32ToFloat16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

func TestBFloat16(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80}, {-2.5, 0xc020}, {math.Float32frombits(0x3f808000), 0x3f80}, // tie to even
		{math.Float32frombits(0x3f818000), 0x3f82}, {math.Float32frombits(0x3f808001), 0x3f81},
	} {
		if got := Float32ToBFloat16(tc.in); got != tc.want {
			t.Errorf("Float32ToBFloat16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
		if back := BFloat16ToFloat32(tc.want); Float32ToBFloat16(back) != tc.want {
			t.Errorf("bf16 %#04x does not round-trip", tc.want)
		}
	}
	if !math.IsNaN(float64(BFloat16ToFloat32(Float32ToBFloat16(float32(math.NaN()))))) {
		t.Error("NaN lost")
	}
}

func TestEncodeDecode(t *testing.T) {
	src := []float32{0, 1, -3.5, 1024, 0.099975586}
	for _, d := range []DType{F32, F16, BF16, F64} {
		raw := make([]byte, len(src)*d.Size())
		if err := EncodeFloat32(raw, d, src); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, len(src))
		if err := DecodeFloat32(got, d, raw); err != nil {
			t.Fatal(err)
		}
		for i := range src {
			if math.Abs(float64(got[i]-src[i])) > 1e-2*math.Abs(float64(src[i])) {
				t.Errorf("%s: %g came back as %g", d, src[i], got[i])
			}
		}
	}
	if err := DecodeFloat32(make([]float32, 2), F32, make([]byte, 7)); !errors.Is(err, ErrShape) {
		t.Errorf("short input: %v", err)
	}
	if err := EncodeFloat32(make([]byte, 4), I32, []float32{1}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("encode to I32: %v", err)
	}
}

func TestParseDType(t *testing.T) {
	for d := F32; d <= Bool; d++ {
		if got, err := ParseDType(d.String()); err != nil || got != d {
			t.Errorf("ParseDType(%q) = %v, %v", d.String(), got, err)
		}
	}
	if _, err := ParseDType("F8_E4M3"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown dtype: %v", err)
	}
}

func TestBroadcastShapes(t *testing.T) {
	for _, tc := range []struct{ a, b, want Shape }{
		{Shape{3, 5}, Shape{5}, Shape{3, 5}},
		{Shape{4, 1, 6}, Shape{1, 7, 1}, Shape{4, 7, 6}},
		{Shape{}, Shape{2, 3}, Shape{2, 3}},
		{Shape{0, 3}, Shape{1, 3}, Shape{0, 3}},
	} {
		got, err := BroadcastShapes(tc.a, tc.b)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("BroadcastShapes(%v, %v) = %v, %v", tc.a, tc.b, got, err)
		}
	}
	if _, err := BroadcastShapes(Shape{3}, Shape{4}); !errors.Is(err, ErrShape) {
		t.Errorf("incompatible shapes: %v", err)
	}
	if err := (Shape{1 << 40, 1 << 40}).Validate(); !errors.Is(err, ErrShape) {
		t.Errorf("huge shape: %v", err)
	}
}

func TestRecover(t *testing.T) {
	run := func(f func()) (err error) {
		defer Recover(&err)
		f()
		return nil
	}
	if err := run(func() { Panicf(ErrShape, "matmul %v", []int{2, 3}) }); !errors.Is(err, ErrShape) || err.Error() != "matmul [2 3]: shape mismatch" {
		t.Errorf("error panic: %v", err)
	}
	err := run(func() { panic("boom") })
	var pe *PanicError
	if !errors.As(err, &pe) || !errors.Is(err, ErrInternal) || len(pe.Stack) == 0 {
		t.Errorf("string panic: %v", err)
	}
	err = run(func() {
		var s []int
		_ = s[3]
	})
	if !errors.Is(err, ErrInternal) {
		t.Errorf("runtime error panic: %v", err)
	}
}

type fakeArch struct{ name string }

func (a fakeArch) Name() string                                             { return a.name }
func (a fakeArch) DefaultConfig() Config                                    { return nil }
func (a fakeArch) ParseConfig([]byte) (Config, error)                       { return nil, nil }
func (a fakeArch) New(context.Context, Config, BuildOptions) (Model, error) { return nil, nil }

func TestRegistry(t *testing.T) {
	RegisterArchitecture(fakeArch{"test-arch"})
	if a, err := LookupArchitecture("test-arch"); err != nil || a.Name() != "test-arch" {
		t.Errorf("lookup: %v, %v", a, err)
	}
	if _, err := LookupArchitecture("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing arch: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("duplicate registration did not panic")
			}
		}()
		RegisterArchitecture(fakeArch{"test-arch"})
	}()
	if _, err := NewBackend("nope", BackendOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing backend: %v", err)
	}
	if err := RegisterPluginArchitecture(fakeArch{"test-arch"}, "p"); !errors.Is(err, ErrConfig) {
		t.Errorf("plugin architecture under a built-in name: %v", err)
	}
	if err := RegisterPluginArchitecture(fakeArch{"test-plugin-arch"}, "p"); err != nil {
		t.Fatal(err)
	}
	if err := RegisterPluginArchitecture(fakeArch{"test-plugin-arch"}, "q"); err == nil || !errors.Is(err, ErrConfig) {
		t.Errorf("second plugin for one name: %v", err)
	}
	found := false
	for _, e := range ArchitectureList() {
		if e.Name == "test-plugin-arch" {
			found = e.Plugin == "p"
		}
		if e.Name == "test-arch" && e.Plugin != "" {
			t.Errorf("built-in architecture listed as plugin %q", e.Plugin)
		}
	}
	if !found {
		t.Errorf("plugin architecture not listed as the plugin's: %v", ArchitectureList())
	}
}

func TestForm(t *testing.T) {
	for _, m := range []Mode{Parallel, Chunkwise, Recurrent} {
		if got, err := ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseMode("fast"); !errors.Is(err, ErrConfig) {
		t.Errorf("ParseMode(fast): %v", err)
	}
	if err := (Form{Mode: Chunkwise, Chunk: -1}).Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("negative chunk: %v", err)
	}
	if err := (Form{Mode: 7}).Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("mode 7: %v", err)
	}
	if !(Info{Modes: []Mode{Parallel, Recurrent}}).Supports(Recurrent) || (Info{Modes: []Mode{Parallel}}).Supports(Chunkwise) {
		t.Error("Info.Supports")
	}
}

func TestConfigFloatJSON(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{{1, "1.0"}, {1e-5, "1e-05"}, {0.001, "0.001"}, {-2, "-2.0"}, {1e21, "1e+21"}, {0, "0.0"}} {
		got, err := ConfigFloat(tc.in).MarshalJSON()
		if err != nil || string(got) != tc.want {
			t.Errorf("%g: %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := ConfigFloat(math.NaN()).MarshalJSON(); err == nil {
		t.Error("NaN marshalled")
	}
}
