package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/densessm/densessm/api"
)

// File names looked for in a checkpoint directory, as Hugging Face names them.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// TensorInfo describes one stored tensor.
type TensorInfo struct {
	Name  string
	DType api.DType
	Shape api.Shape
	// File is the path of the file that holds the tensor: a safetensors
	// file or a PyTorch pytorch_model.bin.
	File string
	// Offset is the position of the tensor's first byte in File (from the
	// start of the file, not of the data section). It is -1 for a PyTorch
	// tensor whose elements are not contiguous in the file (a transposed or
	// strided view of its storage), which Open copies into memory.
	Offset int64
	// Size is the number of bytes, DType.Bytes(Shape.NumElements()). For
	// a Q8_0 tensor (see WeightsKey) Offset and Size are those of its
	// 8-bit values, as its blocks would take them: its scales are stored
	// apart.
	Size int64

	file        int   // index of File in Checkpoint.files
	scaleOffset int64 // of a Q8_0 tensor's scales in File
}

// Checkpoint is an open checkpoint: one safetensors or PyTorch file, or the
// shards of a sharded one. Its methods may be called concurrently, except
// Close.
type Checkpoint struct {
	path     string
	files    []*file
	tensors  []TensorInfo // sorted by name
	byName   map[string]int
	metadata map[string]string
}

// Open opens a checkpoint for reading. path is a .safetensors file, a
// PyTorch pytorch_model.bin (told by its zip signature, whatever its name),
// the .index.json of a sharded checkpoint of either format, or a directory
// that holds, in order of preference, model.safetensors,
// model.safetensors.index.json, pytorch_model.bin or
// pytorch_model.bin.index.json. Every file is mapped and its header
// validated (see the package doc); the tensor data is read only when asked
// for. Call Close when done.
func Open(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", notFound(err))
	}
	if st.IsDir() {
		for _, name := range []string{SingleFileName, IndexFileName, PyTorchFileName, PyTorchIndexFileName} {
			p := filepath.Join(path, name)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if strings.HasSuffix(name, ".json") {
				return openIndex(p)
			}
			return openSingle(p)
		}
		return nil, fmt.Errorf("open checkpoint: directory %s holds none of %s, %s, %s, %s: %w", path, SingleFileName, IndexFileName, PyTorchFileName, PyTorchIndexFileName, api.ErrNotFound)
	}
	if strings.HasSuffix(path, ".json") {
		return openIndex(path)
	}
	return openSingle(path)
}

// OpenBytes opens a safetensors or PyTorch file held in memory (an
// embedded model, say) under a name used in errors. The checkpoint reads
// data in place: it must not change while the checkpoint is open.
func OpenBytes(name string, data []byte) (*Checkpoint, error) {
	if len(data) < 8 {
		return nil, corruptf(name, "%d bytes is too short for the 8-byte header length", len(data))
	}
	h, copies, err := parseFile(name, data)
	if err != nil {
		return nil, err
	}
	return newCheckpoint(name, []*file{{path: name, data: data, header: h, copies: copies}}).pairQ8()
}

func openSingle(path string) (*Checkpoint, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	return newCheckpoint(path, []*file{f}).pairQ8()
}

// newCheckpoint gathers the tensors of files, which must have distinct
// names, and merges their metadata (the first file's value wins).
func newCheckpoint(path string, files []*file) *Checkpoint {
	c := &Checkpoint{path: path, files: files, byName: map[string]int{}, metadata: map[string]string{}}
	for i, f := range files {
		for _, t := range f.header.tensors {
			t.file = i
			c.tensors = append(c.tensors, t)
		}
		for k, v := range f.header.metadata {
			if _, ok := c.metadata[k]; !ok {
				c.metadata[k] = v
			}
		}
	}
	slices.SortFunc(c.tensors, func(a, b TensorInfo) int { return strings.Compare(a.Name, b.Name) })
	for i, t := range c.tensors {
		c.byName[t.Name] = i
	}
	return c
}

// pairQ8 reads each Q8_0 matrix of a checkpoint whose metadata says its
// weights are "q8" (WeightsKey) as one tensor (see pairQ8Tensors). On error it
// closes c.
func (c *Checkpoint) pairQ8() (*Checkpoint, error) {
	if c.metadata[WeightsKey] != api.WeightName(api.Q8_0) {
		return c, nil
	}
	tensors, err := pairQ8Tensors(c.tensors, c.byName)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.tensors = tensors
	clear(c.byName)
	for i, t := range c.tensors {
		c.byName[t.Name] = i
	}
	return c, nil
}

// Path returns the file Open read: the weights file or the index.
func (c *Checkpoint) Path() string { return c.path }

// Tensors returns every tensor's description, sorted by name.
func (c *Checkpoint) Tensors() []TensorInfo {
	out := slices.Clone(c.tensors)
	for i := range out {
		out[i].Shape = out[i].Shape.Clone()
	}
	return out
}

// Metadata returns the "__metadata__" entries of the header (merged over the
// shards of a sharded checkpoint, the first shard in name order winning a
// conflict). The index file's own "metadata" is not included.
func (c *Checkpoint) Metadata() map[string]string { return maps.Clone(c.metadata) }

// Lookup returns the description of the named tensor.
func (c *Checkpoint) Lookup(name string) (TensorInfo, bool) {
	i, ok := c.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := c.tensors[i]
	t.Shape = t.Shape.Clone()
	return t, true
}

// NumParameters returns the total number of elements of all tensors.
func (c *Checkpoint) NumParameters() int64 {
	var n int64
	for _, t := range c.tensors {
		n += int64(t.Shape.NumElements())
	}
	return n
}

// find returns the named tensor of an open checkpoint.
func (c *Checkpoint) find(name string) (TensorInfo, error) {
	if c.files == nil {
		return TensorInfo{}, fmt.Errorf("checkpoint %s: tensor %q: %w", c.path, name, os.ErrClosed)
	}
	i, ok := c.byName[name]
	if !ok {
		return TensorInfo{}, fmt.Errorf("checkpoint %s: tensor %q: %w", c.path, name, api.ErrNotFound)
	}
	return c.tensors[i], nil
}

// Raw returns the stored little-endian bytes of the named tensor, row-major.
// The slice aliases the file's memory (or, for a strided PyTorch view, the
// copy Open made): it is read-only and valid until Close.
func (c *Checkpoint) Raw(name string) ([]byte, error) {
	t, err := c.find(name)
	if err != nil {
		return nil, err
	}
	return c.files[t.file].bytes(t), nil
}

// Float32s returns the named tensor's elements widened to float32: exactly
// for F32, F16 and BF16, rounded to nearest for F64, I32 and I64. Other
// dtypes give an error wrapping api.ErrDType.
func (c *Checkpoint) Float32s(name string) ([]float32, error) {
	t, err := c.find(name)
	if err != nil {
		return nil, err
	}
	if !decodable(t.DType) {
		return nil, fmt.Errorf("checkpoint %s: tensor %q: %s cannot be read as float32: %w", t.File, name, t.DType, api.ErrDType)
	}
	out := make([]float32, t.Shape.NumElements())
	err = guardFault(t.File, func() error { return api.DecodeFloat32(out, t.DType, c.files[t.file].bytes(t)) })
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return out, nil
}

// LoadInto fills each parameter's tensor from the checkpoint tensor of the
// same name, converting the stored dtype to the parameter's (through
// float32 when they differ; see Float32s): F16 and BF16 tensors of F32
// parameters on the parameter's backend, others on the host. It first checks every parameter
// and, if any tensor is missing (api.ErrNotFound), has another shape
// (api.ErrShape) or cannot be converted (api.ErrDType), returns a one-line
// error that counts each kind of problem and names the first few tensors,
// without writing anything. Checkpoint tensors that no parameter asks for
// are ignored, and the values are not checked (LoadModel does both). ctx
// is checked between tensors.
func (c *Checkpoint) LoadInto(ctx context.Context, params []api.Parameter) (err error) {
	defer api.Recover(&err)
	return c.load(ctx, params, loadSettings{})
}

// Close releases the files' memory. Slices returned by Raw must not be used
// afterwards. Close is idempotent.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.close())
	}
	c.files = nil
	return errors.Join(errs...)
}

// decodable reports whether api.DecodeFloat32 reads dtype d.
func decodable(d api.DType) bool {
	switch d {
	case api.F32, api.F16, api.BF16, api.F64, api.I32, api.I64, api.Q8_0:
		return true
	}
	return false
}

// encodable reports whether api.EncodeFloat32 writes dtype d.
func encodable(d api.DType) bool { return d.IsFloat() }

// converter converts raw elements between dtypes through float32, reusing
// its buffers from one call to the next.
type converter struct {
	f32 []float32
	raw []byte
}

// convert returns raw elements of dtype from as elements of dtype to. When
// the dtypes are equal it returns raw itself; otherwise the result is valid
// until the next call.
func (c *converter) convert(to, from api.DType, raw []byte) ([]byte, error) {
	if to == from {
		return raw, nil
	}
	var n int
	if from == api.Q8_0 {
		n = len(raw) / api.Q8BlockBytes * api.Q8Block
	} else {
		n = len(raw) / from.Size()
	}
	size := to.Bytes(n)
	if size < 0 {
		return nil, fmt.Errorf("convert %d values to %s: %w", n, to, api.ErrShape)
	}
	c.f32 = slices.Grow(c.f32[:0], n)[:n]
	c.raw = slices.Grow(c.raw[:0], size)[:size]
	if err := api.DecodeFloat32(c.f32, from, raw); err != nil {
		return nil, err
	}
	if err := api.EncodeFloat32(c.raw, to, c.f32); err != nil {
		return nil, err
	}
	return c.raw, nil
}
