package api

import (
	"encoding/json"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Metadata keys under which a tensor's shape and dtype travel in an Arrow
// field. The values are a JSON array of sizes ("[2,3,4]") and the dtype's
// safetensors spelling ("BF16").
const (
	ArrowShapeKey = "densessm.shape"
	ArrowDTypeKey = "densessm.dtype"
)

// ArrowType returns the Arrow type that carries elements of d. Arrow has no
// bfloat16, so BF16 travels as Uint16 (and Bool as Uint8) with the dtype in
// the field metadata.
func ArrowType(d DType) (arrow.DataType, error) {
	switch d {
	case F32:
		return arrow.PrimitiveTypes.Float32, nil
	case F64:
		return arrow.PrimitiveTypes.Float64, nil
	case F16:
		return arrow.FixedWidthTypes.Float16, nil
	case BF16:
		return arrow.PrimitiveTypes.Uint16, nil
	case I32:
		return arrow.PrimitiveTypes.Int32, nil
	case I64:
		return arrow.PrimitiveTypes.Int64, nil
	case U8, Bool:
		return arrow.PrimitiveTypes.Uint8, nil
	case I8:
		return arrow.PrimitiveTypes.Int8, nil
	}
	return nil, fmt.Errorf("arrow type for dtype %v: %w", d, ErrUnsupported)
}

// TensorToArrow copies t into a flat Arrow array allocated from mem (use
// memory.NewCgoArrowAllocator or the mallocator when the array is exported
// through the C Data Interface) and returns it with a field named name whose
// metadata records the shape and dtype. The caller releases the array.
func TensorToArrow(mem memory.Allocator, name string, t Tensor) (arrow.Field, arrow.Array, error) {
	typ, err := ArrowType(t.DType())
	if err != nil {
		return arrow.Field{}, nil, err
	}
	shape, err := json.Marshal([]int(t.Shape()))
	if err != nil {
		return arrow.Field{}, nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	n := t.Shape().NumElements()
	buf := memory.NewResizableBuffer(mem)
	buf.Resize(n * t.DType().Size())
	t.Backend().Download(buf.Bytes(), t)
	data := array.NewData(typ, n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	buf.Release() // data holds its own reference
	defer data.Release()
	field := arrow.Field{
		Name:     name,
		Type:     typ,
		Metadata: arrow.NewMetadata([]string{ArrowShapeKey, ArrowDTypeKey}, []string{string(shape), t.DType().String()}),
	}
	return field, array.MakeFromData(data), nil
}

// TensorFromArrow allocates a tensor on b and copies a flat Arrow array into
// it. The shape and dtype come from field's metadata (as TensorToArrow
// writes them); without metadata, the array is taken as a vector of the
// dtype its Arrow type implies. The array must have no nulls, and its type
// and length must agree with the metadata.
func TensorFromArrow(b Backend, field arrow.Field, arr arrow.Array) (Tensor, error) {
	shape, dtype, err := arrowTensorMeta(field, arr)
	if err != nil {
		return nil, fmt.Errorf("arrow field %q: %w", field.Name, err)
	}
	data := arr.Data()
	size := dtype.Size()
	bufs := data.Buffers()
	if len(bufs) < 2 || bufs[1] == nil {
		if shape.NumElements() != 0 {
			return nil, fmt.Errorf("arrow field %q has no value buffer: %w", field.Name, ErrCorrupt)
		}
		return b.Alloc(dtype, shape...), nil
	}
	lo, hi := data.Offset()*size, (data.Offset()+data.Len())*size
	raw := bufs[1].Bytes()
	if hi > len(raw) {
		return nil, fmt.Errorf("arrow field %q: value buffer of %d bytes, want %d: %w", field.Name, len(raw), hi, ErrCorrupt)
	}
	t := b.Alloc(dtype, shape...)
	b.Upload(t, raw[lo:hi])
	return t, nil
}

// arrowTensorMeta reads and checks the shape and dtype of an Arrow tensor.
func arrowTensorMeta(field arrow.Field, arr arrow.Array) (Shape, DType, error) {
	if arr.NullN() != 0 {
		return nil, Invalid, fmt.Errorf("%d null values in a tensor: %w", arr.NullN(), ErrCorrupt)
	}
	var dtype DType
	if i := field.Metadata.FindKey(ArrowDTypeKey); i >= 0 {
		d, err := ParseDType(field.Metadata.Values()[i])
		if err != nil {
			return nil, Invalid, err
		}
		dtype = d
	} else {
		for _, d := range []DType{F32, F64, F16, I32, I64, U8, I8} {
			if typ, _ := ArrowType(d); arrow.TypeEqual(typ, arr.DataType()) {
				dtype = d
				break
			}
		}
		if dtype == Invalid {
			return nil, Invalid, fmt.Errorf("arrow type %s: %w", arr.DataType(), ErrUnsupported)
		}
	}
	want, err := ArrowType(dtype)
	if err != nil {
		return nil, Invalid, err
	}
	if !arrow.TypeEqual(want, arr.DataType()) {
		return nil, Invalid, fmt.Errorf("dtype %s travels as %s, got %s: %w", dtype, want, arr.DataType(), ErrCorrupt)
	}
	shape := Shape{arr.Len()}
	if i := field.Metadata.FindKey(ArrowShapeKey); i >= 0 {
		shape = nil
		if err := json.Unmarshal([]byte(field.Metadata.Values()[i]), &shape); err != nil {
			return nil, Invalid, fmt.Errorf("shape metadata %q: %v: %w", field.Metadata.Values()[i], err, ErrCorrupt)
		}
		if err := shape.Validate(); err != nil {
			return nil, Invalid, err
		}
	}
	if shape.NumElements() != arr.Len() {
		return nil, Invalid, fmt.Errorf("shape %v needs %d values, array has %d: %w", shape, shape.NumElements(), arr.Len(), ErrShape)
	}
	return shape, dtype, nil
}
