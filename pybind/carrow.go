package pybind

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/cdata"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/arrow/memory/mallocator"

	"github.com/densessm/densessm/api"
)

// cmem allocates the buffers of the Arrow arrays built for Python (ids):
// C memory, outside the Go heap, zeroed, freed by the Arrow release
// callback. Logits come from floatMem.
var cmem = mallocator.NewMallocator()

// cArray is a pair of Arrow C Data Interface structs that Python allocated
// (ArrowArray and ArrowSchema), given by address.
type cArray struct{ array, schema int64 }

func (c cArray) check(what string) error {
	if c.array == 0 || c.schema == 0 {
		return fmt.Errorf("%s: null ArrowArray or ArrowSchema address: %w", what, api.ErrConfig)
	}
	return nil
}

// importArray takes over the Arrow array at c (moving it out of the C
// structs, which the caller may then free) and returns it; the caller
// releases it. An array with missing values is refused (and released).
func importArray(c cArray, what string) (arrow.Array, error) {
	if err := c.check(what); err != nil {
		return nil, err
	}
	_, arr, err := cdata.ImportCArray(cdata.ArrayFromPtr(uintptr(c.array)), cdata.SchemaFromPtr(uintptr(c.schema)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, err, api.ErrConfig)
	}
	if n := arr.NullN(); n > 0 {
		arr.Release()
		return nil, fmt.Errorf("%s: %d missing values: %w", what, n, api.ErrConfig)
	}
	return arr, nil
}

// exportArray moves arr into the C structs at c; Python's release of them
// releases arr (and frees its C buffers).
func exportArray(arr arrow.Array, c cArray) {
	cdata.ExportArrowArray(arr, cdata.ArrayFromPtr(uintptr(c.array)), cdata.SchemaFromPtr(uintptr(c.schema)))
}

// importIDs copies the token ids of an Int32 or Int64 Arrow array at c
// into a Go slice.
func importIDs(c cArray, what string) ([]int32, error) {
	arr, err := importArray(c, what)
	if err != nil {
		return nil, err
	}
	defer arr.Release()
	switch a := arr.(type) {
	case *array.Int32:
		return append([]int32(nil), a.Int32Values()...), nil
	case *array.Int64:
		ids := make([]int32, a.Len())
		for i, v := range a.Int64Values() {
			if v < 0 || v > 1<<31-1 {
				return nil, fmt.Errorf("%s: id %d at %d is not a token id: %w", what, v, i, api.ErrOutOfRange)
			}
			ids[i] = int32(v)
		}
		return ids, nil
	}
	return nil, fmt.Errorf("%s: want int32 or int64 token ids, got %s: %w", what, arr.DataType(), api.ErrConfig)
}

// cFloat32s is a float32 buffer in C memory that becomes an exported Arrow
// array.
type cFloat32s struct {
	buf  *memory.Buffer
	data []float32
}

// newCFloat32s allocates n float32s in C memory (not zeroed: the caller
// writes every element).
func newCFloat32s(n int) *cFloat32s {
	buf := memory.NewResizableBuffer(floatMem)
	buf.Resize(4 * n)
	b := buf.Bytes()
	var data []float32
	if n > 0 {
		data = unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), n)
	}
	return &cFloat32s{buf: buf, data: data}
}

// bytes returns the buffer as raw bytes.
func (c *cFloat32s) bytes() []byte { return c.buf.Bytes()[:4*len(c.data)] }

// export moves the buffer into an Arrow Float32 array at dst. Afterwards c
// must not be used.
func (c *cFloat32s) export(dst cArray) {
	data := array.NewData(arrow.PrimitiveTypes.Float32, len(c.data), []*memory.Buffer{nil, c.buf}, nil, 0, 0)
	c.buf.Release()
	arr := array.NewFloat32Data(data)
	data.Release()
	exportArray(arr, dst)
	arr.Release()
}

// release frees the buffer when it was not exported.
func (c *cFloat32s) release() { c.buf.Release() }

// exportTensor copies an F32 tensor into C memory and exports it as an
// Arrow Float32 array at dst.
func exportTensor(t api.Tensor, dst cArray) {
	buf := newCFloat32s(t.Shape().NumElements())
	t.Backend().Download(buf.bytes(), t)
	buf.export(dst)
}

// exportInt32s exports ids as an Arrow Int32 array (C memory) at dst.
func exportInt32s(ids []int, dst cArray) {
	b := array.NewInt32Builder(cmem)
	defer b.Release()
	b.Reserve(len(ids))
	for _, id := range ids {
		b.UnsafeAppend(int32(id))
	}
	arr := b.NewArray()
	exportArray(arr, dst)
	arr.Release()
}

// exportIDLists exports lists of ids as an Arrow List<Int32> array (C
// memory) at dst.
func exportIDLists(lists [][]int, dst cArray) {
	b := array.NewListBuilder(cmem, arrow.PrimitiveTypes.Int32)
	defer b.Release()
	values := b.ValueBuilder().(*array.Int32Builder)
	total := 0
	for _, ids := range lists {
		total += len(ids)
	}
	b.Reserve(len(lists))
	values.Reserve(total)
	for _, ids := range lists {
		b.Append(true)
		for _, id := range ids {
			values.UnsafeAppend(int32(id))
		}
	}
	arr := b.NewArray()
	exportArray(arr, dst)
	arr.Release()
}

// importStrings copies the strings of an Arrow string or large_string
// array at c.
func importStrings(c cArray, what string) ([]string, error) {
	arr, err := importArray(c, what)
	if err != nil {
		return nil, err
	}
	defer arr.Release()
	type stringArray interface {
		arrow.Array
		Value(int) string
	}
	a, ok := arr.(stringArray)
	if !ok || (arr.DataType().ID() != arrow.STRING && arr.DataType().ID() != arrow.LARGE_STRING) {
		return nil, fmt.Errorf("%s: want strings, got %s: %w", what, arr.DataType(), api.ErrConfig)
	}
	out := make([]string, a.Len())
	for i := range out {
		out[i] = strings.Clone(a.Value(i)) // Value aliases the C buffer
	}
	return out, nil
}
