package arrowtensor_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/api/arrowtensor"
	"github.com/densessm/densessm/backends/cpu"
)

func rawOf(t api.Tensor) []byte {
	raw := make([]byte, t.Shape().NumElements()*t.DType().Size())
	t.Backend().Download(raw, t)
	return raw
}

func TestArrowRoundTrip(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	for _, tc := range []struct {
		dtype api.DType
		shape []int
	}{
		{api.F32, []int{2, 3, 4}}, {api.F16, []int{5}}, {api.BF16, []int{3, 1, 2}},
		{api.I32, []int{7}}, {api.I64, []int{2, 2}}, {api.F64, []int{}}, {api.F32, []int{0, 4}},
		{api.U8, []int{3}}, {api.I8, []int{2}},
	} {
		src := b.Alloc(tc.dtype, tc.shape...)
		raw := make([]byte, api.Shape(tc.shape).NumElements()*tc.dtype.Size())
		for i := range raw {
			raw[i] = byte(i*37 + 11)
		}
		b.Upload(src, raw)
		field, arr, err := arrowtensor.FromTensor(mem, "w", src)
		if err != nil {
			t.Fatalf("%s%v: %v", tc.dtype, tc.shape, err)
		}
		got, err := arrowtensor.ToTensor(b, field, arr)
		arr.Release()
		if err != nil {
			t.Fatalf("%s%v back: %v", tc.dtype, tc.shape, err)
		}
		if got.DType() != tc.dtype || !got.Shape().Equal(tc.shape) || !bytes.Equal(rawOf(got), raw) {
			t.Errorf("%s%v came back as %s%v with other bytes", tc.dtype, tc.shape, got.DType(), got.Shape())
		}
	}
}

func TestArrowWithoutMetadataAndSliced(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	bld := array.NewFloat32Builder(memory.NewGoAllocator())
	bld.AppendValues([]float32{1, 2, 3, 4, 5}, nil)
	arr := bld.NewFloat32Array()
	sliced := array.NewSlice(arr, 1, 4)
	got, err := arrowtensor.ToTensor(b, arrow.Field{Name: "v", Type: arrow.PrimitiveTypes.Float32}, sliced)
	if err != nil {
		t.Fatal(err)
	}
	if v := api.Float32s(got); !got.Shape().Equal(api.Shape{3}) || v[0] != 2 || v[2] != 4 {
		t.Errorf("sliced array gave %v %v", got.Shape(), v)
	}
}

func TestArrowRejects(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	mem := memory.NewGoAllocator()
	bld := array.NewFloat32Builder(mem)
	bld.AppendValues([]float32{1, 2, 3}, []bool{true, false, true})
	withNull := bld.NewFloat32Array()
	bld.AppendValues([]float32{1, 2, 3}, nil)
	three := bld.NewFloat32Array()
	meta := func(shape, dtype string) arrow.Field {
		return arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Float32,
			Metadata: arrow.NewMetadata([]string{arrowtensor.ShapeKey, arrowtensor.DTypeKey}, []string{shape, dtype})}
	}
	for _, tc := range []struct {
		name  string
		field arrow.Field
		arr   arrow.Array
		want  error
	}{
		{"nulls", arrow.Field{Name: "x"}, withNull, api.ErrCorrupt},
		{"length", meta("[2,2]", "F32"), three, api.ErrShape},
		{"type", meta("[3]", "I32"), three, api.ErrCorrupt},
		{"dtype", meta("[3]", "Q8"), three, api.ErrUnsupported},
		{"shape json", meta("[3", "F32"), three, api.ErrCorrupt},
		{"negative", meta("[-3]", "F32"), three, api.ErrShape},
	} {
		if _, err := arrowtensor.ToTensor(b, tc.field, tc.arr); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}
