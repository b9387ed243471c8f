// Package arrowtensor converts tensors to and from Apache Arrow arrays: a
// flat array of the elements, with the shape and dtype in the field's
// metadata. Plugin requests, the Python binding and datasets use it; it is
// its own package so that code that does not use Arrow does not link
// arrow-go.
package arrowtensor

import (
	"encoding/json"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/densessm/densessm/api"
)

// Metadata keys under which a tensor's shape and dtype travel in an Arrow
// field. The values are a JSON array of sizes ("[2,3,4]") and the dtype's
// safetensors spelling ("BF16").
const (
	ShapeKey = "densessm.shape"
	DTypeKey = "densessm.dtype"
)

// Type returns the Arrow type that carries elements of d. Arrow has no
// bfloat16, so BF16 travels as Uint16 (and Bool as Uint8) with the dtype in
// the field metadata.
func Type(d api.DType) (arrow.DataType, error) {
	switch d {
	case api.F32:
		return arrow.PrimitiveTypes.Float32, nil
	case api.F64:
		return arrow.PrimitiveTypes.Float64, nil
	case api.F16:
		return arrow.FixedWidthTypes.Float16, nil
	case api.BF16:
		return arrow.PrimitiveTypes.Uint16, nil
	case api.I32:
		return arrow.PrimitiveTypes.Int32, nil
	case api.I64:
		return arrow.PrimitiveTypes.Int64, nil
	case api.U8, api.Bool:
		return arrow.PrimitiveTypes.Uint8, nil
	case api.I8:
		return arrow.PrimitiveTypes.Int8, nil
	}
	return nil, fmt.Errorf("arrow type for dtype %v: %w", d, api.ErrUnsupported)
}

// FromTensor copies t into a flat Arrow array allocated from mem (use
// memory.NewCgoArrowAllocator or the mallocator when the array is exported
// through the C Data Interface) and returns it with a field named name whose
// metadata records the shape and dtype. The caller releases the array.
func FromTensor(mem memory.Allocator, name string, t api.Tensor) (arrow.Field, arrow.Array, error) {
	typ, err := Type(t.DType())
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
		Metadata: arrow.NewMetadata([]string{ShapeKey, DTypeKey}, []string{string(shape), t.DType().String()}),
	}
	return field, array.MakeFromData(data), nil
}

// ToTensor allocates a tensor on b and copies a flat Arrow array into
// it. The shape and dtype come from field's metadata (as FromTensor
// writes them); without metadata, the array is taken as a vector of the
// dtype its Arrow type implies. The array must have no nulls, and its type
// and length must agree with the metadata.
func ToTensor(b api.Backend, field arrow.Field, arr arrow.Array) (api.Tensor, error) {
	shape, dtype, err := meta(field, arr)
	if err != nil {
		return nil, fmt.Errorf("arrow field %q: %w", field.Name, err)
	}
	data := arr.Data()
	size := dtype.Size()
	bufs := data.Buffers()
	if len(bufs) < 2 || bufs[1] == nil {
		if shape.NumElements() != 0 {
			return nil, fmt.Errorf("arrow field %q has no value buffer: %w", field.Name, api.ErrCorrupt)
		}
		return b.Alloc(dtype, shape...), nil
	}
	lo, hi := data.Offset()*size, (data.Offset()+data.Len())*size
	raw := bufs[1].Bytes()
	if hi > len(raw) {
		return nil, fmt.Errorf("arrow field %q: value buffer of %d bytes, want %d: %w", field.Name, len(raw), hi, api.ErrCorrupt)
	}
	t := b.Alloc(dtype, shape...)
	b.Upload(t, raw[lo:hi])
	return t, nil
}

// meta reads and checks the shape and dtype of an Arrow tensor.
func meta(field arrow.Field, arr arrow.Array) (api.Shape, api.DType, error) {
	if arr.NullN() != 0 {
		return nil, api.Invalid, fmt.Errorf("%d null values in a tensor: %w", arr.NullN(), api.ErrCorrupt)
	}
	var dtype api.DType
	if i := field.Metadata.FindKey(DTypeKey); i >= 0 {
		d, err := api.ParseDType(field.Metadata.Values()[i])
		if err != nil {
			return nil, api.Invalid, err
		}
		if d.Block() != 1 {
			return nil, api.Invalid, fmt.Errorf("a %s tensor does not cross as Arrow: %w", d, api.ErrUnsupported)
		}
		dtype = d
	} else {
		for _, d := range []api.DType{api.F32, api.F64, api.F16, api.I32, api.I64, api.U8, api.I8} {
			if typ, _ := Type(d); arrow.TypeEqual(typ, arr.DataType()) {
				dtype = d
				break
			}
		}
		if dtype == api.Invalid {
			return nil, api.Invalid, fmt.Errorf("arrow type %s: %w", arr.DataType(), api.ErrUnsupported)
		}
	}
	want, err := Type(dtype)
	if err != nil {
		return nil, api.Invalid, err
	}
	if !arrow.TypeEqual(want, arr.DataType()) {
		return nil, api.Invalid, fmt.Errorf("dtype %s travels as %s, got %s: %w", dtype, want, arr.DataType(), api.ErrCorrupt)
	}
	shape := api.Shape{arr.Len()}
	if i := field.Metadata.FindKey(ShapeKey); i >= 0 {
		shape = nil
		if err := json.Unmarshal([]byte(field.Metadata.Values()[i]), &shape); err != nil {
			return nil, api.Invalid, fmt.Errorf("shape metadata %q: %v: %w", field.Metadata.Values()[i], err, api.ErrCorrupt)
		}
		if err := shape.Validate(); err != nil {
			return nil, api.Invalid, err
		}
	}
	if shape.NumElements() != arr.Len() {
		return nil, api.Invalid, fmt.Errorf("shape %v needs %d values, array has %d: %w", shape, shape.NumElements(), arr.Len(), api.ErrShape)
	}
	return shape, dtype, nil
}

// FromHost wraps the elements of h in an Arrow array without copying them
// (the array aliases h.Data), with a field named h.Name recording the
// shape and dtype. The caller releases the array.
func FromHost(h api.HostTensor) (arrow.Field, arrow.Array, error) {
	typ, err := Type(h.DType)
	if err != nil {
		return arrow.Field{}, nil, err
	}
	n := h.Shape.NumElements()
	if len(h.Data) != n*h.DType.Size() {
		return arrow.Field{}, nil, fmt.Errorf("tensor %q: %d bytes for %d %s values: %w", h.Name, len(h.Data), n, h.DType, api.ErrShape)
	}
	shape, err := json.Marshal([]int(h.Shape))
	if err != nil {
		return arrow.Field{}, nil, fmt.Errorf("tensor %q: %w", h.Name, err)
	}
	data := array.NewData(typ, n, []*memory.Buffer{nil, memory.NewBufferBytes(h.Data)}, nil, 0, 0)
	defer data.Release()
	field := arrow.Field{
		Name:     h.Name,
		Type:     typ,
		Metadata: arrow.NewMetadata([]string{ShapeKey, DTypeKey}, []string{string(shape), h.DType.String()}),
	}
	return field, array.MakeFromData(data), nil
}

// ToHost copies a flat Arrow array (as FromHost or FromTensor make it)
// into a HostTensor named after the field.
func ToHost(field arrow.Field, arr arrow.Array) (api.HostTensor, error) {
	h, err := ViewHost(field, arr)
	if err != nil {
		return api.HostTensor{}, err
	}
	h.Data = append([]byte(nil), h.Data...)
	return h, nil
}

// ViewHost is ToHost without the copy: Data aliases the array's value
// buffer. It stays valid while that memory does (always, for buffers of Go
// memory: arrays read from a []byte or made by the Go allocator).
func ViewHost(field arrow.Field, arr arrow.Array) (api.HostTensor, error) {
	shape, dtype, err := meta(field, arr)
	if err != nil {
		return api.HostTensor{}, fmt.Errorf("arrow field %q: %w", field.Name, err)
	}
	out := api.HostTensor{Name: field.Name, DType: dtype, Shape: shape, Data: []byte{}}
	n := shape.NumElements() * dtype.Size()
	if n == 0 {
		return out, nil
	}
	data := arr.Data()
	bufs := data.Buffers()
	size := dtype.Size()
	lo, hi := data.Offset()*size, (data.Offset()+data.Len())*size
	if len(bufs) < 2 || bufs[1] == nil || hi > bufs[1].Len() {
		return api.HostTensor{}, fmt.Errorf("arrow field %q: value buffer shorter than %d bytes: %w", field.Name, hi, api.ErrCorrupt)
	}
	out.Data = bufs[1].Bytes()[lo:hi:hi]
	return out, nil
}
