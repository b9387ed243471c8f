package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/densessm/densessm/api"
)

// hostBackend is a minimal api.Backend for tests: tensors are byte slices,
// and only the memory methods and Convert to F32 are implemented (the
// embedded nil Backend makes any other kernel call panic). It counts the
// bytes uploaded and the tensors allocated and freed.
type hostBackend struct {
	api.Backend
	uploaded      int64
	allocs, frees int
}

type hostTensor struct {
	b     *hostBackend
	dtype api.DType
	shape api.Shape
	data  []byte
}

func (t *hostTensor) DType() api.DType     { return t.dtype }
func (t *hostTensor) Shape() api.Shape     { return t.shape }
func (t *hostTensor) Backend() api.Backend { return t.b }
func (b *hostBackend) Name() string        { return "host" }
func (b *hostBackend) Alloc(d api.DType, shape ...int) api.Tensor {
	b.allocs++
	return &hostTensor{b: b, dtype: d, shape: shape, data: make([]byte, api.Shape(shape).NumElements()*d.Size())}
}

func (b *hostBackend) Upload(dst api.Tensor, src []byte) {
	d := dst.(*hostTensor)
	if len(src) != len(d.data) {
		api.Panicf(api.ErrShape, "upload %d bytes into %d", len(src), len(d.data))
	}
	copy(d.data, src)
	b.uploaded += int64(len(src))
}

func (b *hostBackend) Free(api.Tensor) { b.frees++ }

// Convert widens src to the F32 dst as the CPU backend does.
func (b *hostBackend) Convert(dst, src api.Tensor) {
	d, s := dst.(*hostTensor), src.(*hostTensor)
	if d.dtype != api.F32 || d.shape.NumElements() != s.shape.NumElements() {
		api.Panicf(api.ErrUnsupported, "convert %s%v to %s%v", s.dtype, s.shape, d.dtype, d.shape)
	}
	f := make([]float32, s.shape.NumElements())
	if err := api.DecodeFloat32(f, s.dtype, s.data); err != nil {
		panic(err)
	}
	if err := api.EncodeFloat32(d.data, api.F32, f); err != nil {
		panic(err)
	}
}

func (b *hostBackend) Download(dst []byte, src api.Tensor) {
	s := src.(*hostTensor)
	if len(dst) != len(s.data) {
		api.Panicf(api.ErrShape, "download %d bytes into %d", len(s.data), len(dst))
	}
	copy(dst, s.data)
}

// f32Tensor makes an F32 host tensor holding values.
func f32Tensor(b *hostBackend, values []float32, shape ...int) api.Tensor {
	t := b.Alloc(api.F32, shape...).(*hostTensor)
	if err := api.EncodeFloat32(t.data, api.F32, values); err != nil {
		panic(err)
	}
	return t
}

// hostFloat32s decodes an F32 host tensor.
func hostFloat32s(t api.Tensor) []float32 {
	h := t.(*hostTensor)
	out := make([]float32, h.shape.NumElements())
	if err := api.DecodeFloat32(out, api.F32, h.data); err != nil {
		panic(err)
	}
	return out
}

// expectation is the JSON the fixture script writes next to a fixture.
type expectation struct {
	Metadata map[string]string `json:"metadata"`
	Tensors  []struct {
		Name   string    `json:"name"`
		DType  string    `json:"dtype"`
		Shape  []int     `json:"shape"`
		Values []float64 `json:"values"`
	} `json:"tensors"`
}

func readExpectation(t testing.TB, path string) expectation {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e expectation
	if err := json.Unmarshal(text, &e); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return e
}

// checkExpectation compares every tensor of c with e: names, dtypes, shapes,
// metadata, and values bit for bit.
func checkExpectation(t *testing.T, c *Checkpoint, e expectation) {
	t.Helper()
	infos := c.Tensors()
	if len(infos) != len(e.Tensors) {
		t.Fatalf("%d tensors, want %d", len(infos), len(e.Tensors))
	}
	for i, want := range e.Tensors {
		got := infos[i]
		if got.Name != want.Name || got.DType.String() != want.DType || !got.Shape.Equal(want.Shape) {
			t.Fatalf("tensor %d is %q %s%v, want %q %s%v", i, got.Name, got.DType, got.Shape, want.Name, want.DType, want.Shape)
		}
		raw, err := c.Raw(got.Name)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(raw)) != got.Size || got.Size != int64(len(want.Values)*got.DType.Size()) {
			t.Fatalf("%s: %d raw bytes, Size %d, want %d values", got.Name, len(raw), got.Size, len(want.Values))
		}
		vals, err := c.Float32s(got.Name)
		if err != nil {
			t.Fatal(err)
		}
		for j, w := range want.Values {
			if got.DType == api.I64 {
				if v := int64(binary.LittleEndian.Uint64(raw[8*j:])); float64(v) != w {
					t.Errorf("%s[%d] = %d, want %v", got.Name, j, v, w)
				}
			}
			if math.Float32bits(vals[j]) != math.Float32bits(float32(w)) {
				t.Errorf("%s[%d] = %v, want %v", got.Name, j, vals[j], w)
			}
		}
	}
	if md := c.Metadata(); fmt.Sprint(md) != fmt.Sprint(e.Metadata) {
		t.Errorf("metadata %v, want %v", md, e.Metadata)
	}
}

// fixture returns the bytes of testdata/mixed.safetensors.
func fixture(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "mixed.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// writeTemp writes data to a new file in a test directory and returns its path.
func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
