package checkpoint

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"
)

// NamedTensor is one tensor to write: its name, dtype, shape and raw
// little-endian elements (len(Data) == Shape.NumElements() * DType.Size()).
type NamedTensor struct {
	Name  string
	DType api.DType
	Shape api.Shape
	Data  []byte
}

// FromParameter downloads a parameter's tensor into a NamedTensor stored as
// dtype storage. A tensor already of dtype storage is kept as is; an F32
// tensor may be narrowed to F16 or BF16 (round to nearest even) or widened
// to F64. Any other pair gives an error wrapping api.ErrDType.
func FromParameter(p api.Parameter, storage api.DType) (_ NamedTensor, err error) {
	defer api.Recover(&err)
	t := p.Value
	raw := make([]byte, t.DType().Bytes(t.Shape().NumElements()))
	t.Backend().Download(raw, t)
	return FromHost(api.HostTensor{Name: p.Name, DType: t.DType(), Shape: t.Shape().Clone(), Data: raw}, storage)
}

// FromHost is FromParameter for a parameter's value in host memory (as
// api.Model.ReadParams returns them).
func FromHost(h api.HostTensor, storage api.DType) (NamedTensor, error) {
	if h.DType != storage && (h.DType != api.F32 || !encodable(storage)) {
		return NamedTensor{}, fmt.Errorf("parameter %q: cannot store %s as %s: %w", h.Name, h.DType, storage, api.ErrDType)
	}
	var conv converter
	data, err := conv.convert(storage, h.DType, h.Data)
	if err != nil {
		return NamedTensor{}, fmt.Errorf("parameter %q: %w", h.Name, err)
	}
	return NamedTensor{Name: h.Name, DType: storage, Shape: h.Shape, Data: data}, nil
}

// FromParameters applies FromParameter to each parameter.
func FromParameters(params []api.Parameter, storage api.DType) ([]NamedTensor, error) {
	out := make([]NamedTensor, len(params))
	for i, p := range params {
		var err error
		if out[i], err = FromParameter(p, storage); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeChunk is the most bytes Write writes between two checks of its
// context.
const writeChunk = 4 << 20

// Write stores tensors and metadata as a safetensors file at path. The
// tensors are laid out in name order; the header is padded with spaces to a
// multiple of 8 bytes, so the data section is 8-byte aligned. The file is
// written next to path under a temporary name, fsync'd and renamed over path,
// and the directory is fsync'd: readers see the old file or the whole new
// one, and on error the temporary file is removed and path is untouched.
// The new file gets the permissions of the file it replaces, or 0644.
//
// ctx is checked before each 4 MiB of data: once it is done, Write stops
// and returns an error wrapping ctx.Err(), with path untouched.
//
// A Q8_0 tensor is stored as its values and its scales (see WeightsKey),
// and the metadata then says so.
//
// Invalid input gives an error before anything is written: a duplicate name
// or the reserved name "__metadata__" (wrapping api.ErrCorrupt), an invalid
// dtype (api.ErrDType), an invalid shape or a data length that does not match
// it (api.ErrShape).
func Write(ctx context.Context, path string, tensors []NamedTensor, metadata map[string]string) (err error) {
	sorted := make([]NamedTensor, 0, len(tensors))
	for _, t := range tensors {
		if t.DType != api.Q8_0 {
			sorted = append(sorted, t)
			continue
		}
		if err := checkQ8Tensor(t); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		q, d := splitQ8(t)
		sorted = append(sorted, q, d)
		if metadata[WeightsKey] != api.WeightName(api.Q8_0) {
			metadata = maps.Clone(metadata)
			if metadata == nil {
				metadata = map[string]string{}
			}
			metadata[WeightsKey] = api.WeightName(api.Q8_0)
		}
	}
	slices.SortFunc(sorted, func(a, b NamedTensor) int { return strings.Compare(a.Name, b.Name) })
	head, err := encodeHeader(sorted, metadata)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}

	return atomicfile.Write(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(head)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(head); err != nil {
			return err
		}
		for _, t := range sorted {
			for data := t.Data; len(data) > 0; {
				if err := ctx.Err(); err != nil {
					return err
				}
				chunk := data[:min(len(data), writeChunk)]
				if _, err := w.Write(chunk); err != nil {
					return err
				}
				data = data[len(chunk):]
			}
		}
		return ctx.Err()
	})
}

// encodeHeader validates tensors, which are sorted by name, and returns the
// padded header JSON that lays them out in that order.
func encodeHeader(sorted []NamedTensor, metadata map[string]string) ([]byte, error) {
	var b []byte
	b = append(b, '{')
	if len(metadata) > 0 {
		b = appendJSONString(b, metadataKey)
		b = append(b, ":{"...)
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, metadata[k])
		}
		b = append(b, '}')
	}
	var offset uint64
	for i, t := range sorted {
		if err := checkTensor(t); err != nil {
			return nil, err
		}
		if i > 0 && t.Name == sorted[i-1].Name {
			return nil, fmt.Errorf("tensor %q appears twice: %w", t.Name, api.ErrCorrupt)
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendJSONString(b, t.Name)
		b = append(b, `:{"dtype":`...)
		b = appendJSONString(b, t.DType.String())
		b = append(b, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(d), 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendUint(b, offset, 10)
		offset += uint64(len(t.Data))
		b = append(b, ',')
		b = strconv.AppendUint(b, offset, 10)
		b = append(b, "]}"...)
	}
	b = append(b, '}')
	for len(b)%8 != 0 {
		b = append(b, ' ')
	}
	if len(b) > maxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the %d-byte limit readers apply: %w", len(b), maxHeaderSize, api.ErrUnsupported)
	}
	return b, nil
}

// checkTensor validates one tensor before writing.
func checkTensor(t NamedTensor) error {
	switch {
	case t.Name == metadataKey:
		return fmt.Errorf("tensor name %q is reserved: %w", t.Name, api.ErrCorrupt)
	case !t.DType.Valid():
		return fmt.Errorf("tensor %q: invalid dtype %v: %w", t.Name, t.DType, api.ErrDType)
	}
	if err := t.Shape.Validate(); err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if size := t.DType.Size(); len(t.Data)%size != 0 || len(t.Data)/size != t.Shape.NumElements() {
		return fmt.Errorf("tensor %q: %d bytes for the %d elements of %s%v: %w", t.Name, len(t.Data), t.Shape.NumElements(), t.DType, t.Shape, api.ErrShape)
	}
	return nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // marshalling a string cannot fail
	return append(b, q...)
}
