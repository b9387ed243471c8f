package checkpoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// q8Tensor returns a Q8_0 tensor of the given shape quantized from random
// values, and the values it holds.
func q8Tensor(t *testing.T, name string, rows, cols int) (NamedTensor, []float32) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(rows), uint64(cols)))
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	raw := make([]byte, api.Q8_0.Bytes(len(v)))
	if err := api.EncodeFloat32(raw, api.Q8_0, v); err != nil {
		t.Fatal(err)
	}
	if err := api.DecodeFloat32(v, api.Q8_0, raw); err != nil {
		t.Fatal(err)
	}
	return NamedTensor{Name: name, DType: api.Q8_0, Shape: api.Shape{rows, cols}, Data: raw}, v
}

// TestQ8RoundTrip writes a Q8_0 tensor beside an F32 one and reads it
// back: the file holds an I8 tensor and an F16 scale tensor that any
// safetensors reader sees, and Open gives back one Q8_0 tensor with the
// same blocks and values.
func TestQ8RoundTrip(t *testing.T) {
	w, values := q8Tensor(t, "layer.weight", 3, 64)
	norm := NamedTensor{Name: "layer.norm", DType: api.F32, Shape: api.Shape{2}, Data: make([]byte, 8)}
	path := filepath.Join(t.TempDir(), "q8.safetensors")
	if err := Write(t.Context(), path, []NamedTensor{w, norm}, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	// What a plain safetensors reader sees.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+binary.LittleEndian.Uint64(data)], &header); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"layer.weight": `"I8"`, "layer.weight_scale": `"F16"`, "layer.norm": `"F32"`} {
		var e struct{ Dtype json.RawMessage }
		if err := json.Unmarshal(header[name], &e); err != nil || string(e.Dtype) != want {
			t.Errorf("header entry %s: %s, want dtype %s", name, header[name], want)
		}
	}

	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Metadata()[WeightsKey]; got != "q8" || c.WeightDType() != api.Q8_0 {
		t.Errorf("metadata %s = %q, WeightDType %s; want q8, Q8_0", WeightsKey, got, c.WeightDType())
	}
	var names []string
	for _, ti := range c.Tensors() {
		names = append(names, ti.Name)
	}
	if !slices.Equal(names, []string{"layer.norm", "layer.weight"}) {
		t.Fatalf("tensors %v, want the norm and the weight, not its scales", names)
	}
	ti, _ := c.Lookup("layer.weight")
	if ti.DType != api.Q8_0 || !ti.Shape.Equal(w.Shape) || ti.Size != int64(len(w.Data)) {
		t.Errorf("weight is %s%v of %d bytes, want Q8_0%v of %d", ti.DType, ti.Shape, ti.Size, w.Shape, len(w.Data))
	}
	raw, err := c.Raw("layer.weight")
	if err != nil || !bytes.Equal(raw, w.Data) {
		t.Errorf("Raw: %v, blocks equal: %v", err, bytes.Equal(raw, w.Data))
	}
	got, err := c.Float32s("layer.weight")
	if err != nil || !slices.Equal(got, values) {
		t.Errorf("Float32s: %v, values equal: %v", err, slices.Equal(got, values))
	}
}

// TestQ8Pairs checks how Open pairs tensors: only in a file whose metadata
// says q8, and a pair whose shapes disagree is corrupt.
func TestQ8Pairs(t *testing.T) {
	w, _ := q8Tensor(t, "w", 2, 32)
	q, d := splitQ8(w)
	dir := t.TempDir()
	open := func(name string, meta map[string]string, tensors ...NamedTensor) (*Checkpoint, error) {
		path := filepath.Join(dir, name)
		if err := Write(t.Context(), path, tensors, meta); err != nil {
			t.Fatal(err)
		}
		return Open(path)
	}
	c, err := open("plain.safetensors", nil, q, d)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.Tensors()); n != 2 {
		t.Errorf("without %s metadata: %d tensors, want the I8 and F16 ones apart", WeightsKey, n)
	}
	c.Close()
	bad := d
	bad.Shape, bad.Data = api.Shape{1, 2}, d.Data
	if _, err := open("bad.safetensors", map[string]string{WeightsKey: "q8"}, q, bad); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("scales of shape %v for %v: %v, want ErrCorrupt", bad.Shape, q.Shape, err)
	}
	short := w
	short.Data = w.Data[:len(w.Data)-1]
	if err := Write(t.Context(), filepath.Join(dir, "short.safetensors"), []NamedTensor{short}, nil); !errors.Is(err, api.ErrShape) {
		t.Errorf("a Q8_0 tensor one byte short: %v, want ErrShape", err)
	}
}

// TestQ8NonFinite checks that a block whose scale is NaN or infinite
// counts each of its elements.
func TestQ8NonFinite(t *testing.T) {
	w, _ := q8Tensor(t, "w", 1, 96)
	binary.LittleEndian.PutUint16(w.Data[0:], 0x7e00)                  // NaN
	binary.LittleEndian.PutUint16(w.Data[2*api.Q8BlockBytes:], 0xfc00) // -Inf
	if nan, inf := countNonFinite(api.Q8_0, w.Data); nan != api.Q8Block || inf != api.Q8Block {
		t.Errorf("countNonFinite: %d NaN and %d infinite, want %d each", nan, inf, api.Q8Block)
	}
}

// q8Fixture returns a small safetensors file holding a Q8_0 pair (a seed
// of FuzzOpen).
func q8Fixture(t testing.TB) []byte {
	raw := make([]byte, api.Q8_0.Bytes(64))
	v := make([]float32, 64)
	for i := range v {
		v[i] = float32(i) - 20
	}
	if err := api.EncodeFloat32(raw, api.Q8_0, v); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "q8.safetensors")
	w := NamedTensor{Name: "w", DType: api.Q8_0, Shape: api.Shape{2, 32}, Data: raw}
	if err := Write(context.Background(), path, []NamedTensor{w}, nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
