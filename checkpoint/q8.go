package checkpoint

import (
	"fmt"
	"slices"

	"github.com/densessm/densessm/api"
)

// Low-precision weights in safetensors files (docs/formats.md).
//
// safetensors has no block-quantized dtype, so a Q8_0 matrix W [rows, cols]
// is stored as two ordinary tensors that any safetensors reader loads:
//
//	W            I8  [rows, cols]       the 8-bit values q
//	W + "_scale" F16 [rows, cols/32]    one scale d per block of 32
//
// with element (i, j) = d[i, j/32] * q[i, j], and the file's metadata
// WeightsKey set to "q8" (Write does both). Open reads such a pair as one
// tensor W of dtype api.Q8_0 (and the scale tensor is not listed on its
// own), and LoadModel builds models from such a file with Q8_0 weights
// unless told otherwise (api.BuildOptions.Weights), so that they are not
// quantized again.

// WeightsKey is the metadata key that names the storage of a file's weight
// matrices: "q8" (absent: each tensor's own dtype).
const WeightsKey = "densessm.weights"

// Q8ScaleSuffix ends the name of the scale tensor of a Q8_0 matrix.
const Q8ScaleSuffix = "_scale"

// pairQ8Tensors replaces, in tensors (sorted by name), each I8 tensor W that has
// a scale tensor W+Q8ScaleSuffix by one Q8_0 tensor W, and drops the scale
// tensors. A pair whose shapes or dtypes disagree is an error wrapping
// api.ErrCorrupt.
func pairQ8Tensors(tensors []TensorInfo, byName map[string]int) ([]TensorInfo, error) {
	out := tensors[:0:0]
	scales := map[string]bool{}
	for _, t := range tensors {
		si, ok := byName[t.Name+Q8ScaleSuffix]
		if t.DType != api.I8 || !ok {
			out = append(out, t)
			continue
		}
		s := tensors[si]
		if len(t.Shape) != 2 || t.Shape[1]%api.Q8Block != 0 || s.DType != api.F16 || !s.Shape.Equal(api.Shape{t.Shape[0], t.Shape[1] / api.Q8Block}) ||
			s.file != t.file || t.Offset < 0 || s.Offset < 0 {
			return nil, fmt.Errorf("checkpoint %s: Q8_0 tensor %q is %s%v with scales %s%v; want I8 [rows, cols] (cols a multiple of %d) and F16 [rows, cols/%d] in one file: %w",
				t.File, t.Name, t.DType, t.Shape, s.DType, s.Shape, api.Q8Block, api.Q8Block, api.ErrCorrupt)
		}
		scales[s.Name] = true
		q := t
		q.DType = api.Q8_0
		q.Size = int64(api.Q8_0.Bytes(t.Shape.NumElements()))
		q.scaleOffset = s.Offset
		out = append(out, q)
	}
	kept := out[:0]
	for _, t := range out {
		if !scales[t.Name] {
			kept = append(kept, t)
		}
	}
	return kept, nil
}

// q8Blocks returns the Q8_0 blocks of a paired tensor t (see pairQ8Tensors) in
// the layout api.Q8_0 describes, assembled from its values and scales in
// data (the file's bytes).
func q8Blocks(data []byte, t TensorInfo) []byte {
	n := t.Shape.NumElements() / api.Q8Block
	q := data[t.Offset : t.Offset+int64(n*api.Q8Block)]
	d := data[t.scaleOffset : t.scaleOffset+int64(2*n)]
	out := make([]byte, n*api.Q8BlockBytes)
	for b := range n {
		blk := out[b*api.Q8BlockBytes : (b+1)*api.Q8BlockBytes]
		copy(blk, d[2*b:2*b+2])
		copy(blk[2:], q[b*api.Q8Block:(b+1)*api.Q8Block])
	}
	return out
}

// splitQ8 returns the two tensors that store the Q8_0 tensor t (see the
// file comment), which checkQ8Tensor accepts.
func splitQ8(t NamedTensor) (values, scales NamedTensor) {
	n := t.Shape.NumElements() / api.Q8Block
	q, d := make([]byte, n*api.Q8Block), make([]byte, 2*n)
	for b := range n {
		blk := t.Data[b*api.Q8BlockBytes : (b+1)*api.Q8BlockBytes]
		copy(d[2*b:], blk[:2])
		copy(q[b*api.Q8Block:], blk[2:])
	}
	shape := slices.Clone(t.Shape)
	shape[len(shape)-1] /= api.Q8Block
	return NamedTensor{Name: t.Name, DType: api.I8, Shape: t.Shape, Data: q},
		NamedTensor{Name: t.Name + Q8ScaleSuffix, DType: api.F16, Shape: shape, Data: d}
}

// WeightDType returns the weight storage the checkpoint's metadata names
// (WeightsKey): BF16 or Q8_0, else F32.
func (c *Checkpoint) WeightDType() api.DType { return weightsNamed(c.metadata) }

// weightsNamed returns the weight storage metadata names (WeightsKey):
// BF16 or Q8_0, else F32.
func weightsNamed(metadata map[string]string) api.DType {
	if d, err := api.ParseWeightDType(metadata[WeightsKey]); err == nil {
		return d
	}
	return api.F32
}

// checkQ8Tensor checks that a Q8_0 tensor to write has rows of whole
// blocks and the bytes its shape needs.
func checkQ8Tensor(t NamedTensor) error {
	if err := t.Shape.Validate(); err != nil || len(t.Shape) == 0 || t.Shape[len(t.Shape)-1]%api.Q8Block != 0 ||
		len(t.Data) != api.Q8_0.Bytes(t.Shape.NumElements()) {
		return fmt.Errorf("tensor %q: Q8_0%v with %d bytes: want a last axis that is a multiple of %d and %d bytes per block: %w",
			t.Name, t.Shape, len(t.Data), api.Q8Block, api.Q8BlockBytes, api.ErrShape)
	}
	return nil
}
