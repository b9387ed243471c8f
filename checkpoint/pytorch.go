package checkpoint

import (
	"archive/zip"
	"bytes"
	"fmt"
	"math"
	"strings"

	"github.com/densessm/densessm/api"
)

// File names of PyTorch weights in a checkpoint directory, as Hugging Face
// names them. Open reads them when the directory holds no safetensors.
const (
	PyTorchFileName      = "pytorch_model.bin"
	PyTorchIndexFileName = "pytorch_model.bin.index.json"
)

var (
	// zipMagic starts a zip archive's first local file header, and
	// emptyZipMagic an archive with no entries.
	zipMagic      = []byte("PK\x03\x04")
	emptyZipMagic = []byte("PK\x05\x06")
	// torchMagic is torch's magic number 0x1950a86a20f9469cfc6c as the
	// pickle opcode LONG1 writes it (10 little-endian bytes): the first
	// pickle of a file torch.save wrote in the legacy non-zip format.
	torchMagic = []byte{opLong1, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}
)

// parseFile validates a whole weights file held in data and returns its
// tensors: a PyTorch zip checkpoint, told by its zip signature, or else a
// safetensors file. For a PyTorch file it also returns the bytes of the
// tensors it had to materialise (see parsePyTorch), by name.
func parseFile(path string, data []byte) (*header, map[string][]byte, error) {
	switch {
	case bytes.HasPrefix(data, zipMagic) || bytes.HasPrefix(data, emptyZipMagic):
		return parsePyTorch(path, data)
	case isLegacyTorch(data):
		return nil, nil, pytorchErrorf(path, api.ErrUnsupported, "legacy PyTorch format (not a zip archive: PyTorch before 1.6, or torch.save with _use_new_zipfile_serialization=False): re-save it with torch.save's default zip format, or convert it with a Python script")
	}
	h, err := parseHeader(path, data)
	if err != nil && isPickle(data) && (len(data) <= 8 || data[8] != '{') {
		// A safetensors header length can start like a pickle too, so this
		// is only said of a file that is not safetensors, whose header
		// does not even start where a header would.
		return nil, nil, pytorchErrorf(path, api.ErrUnsupported, "a Python pickle (protocol %d), neither safetensors nor a torch.save zip archive: re-save the weights with torch.save or safetensors", data[1])
	}
	return h, nil, err
}

// isPickle reports whether data starts like a pickle of protocol 2 to 5:
// the PROTO opcode and its protocol number.
func isPickle(data []byte) bool {
	return len(data) >= 2 && data[0] == opProto && data[1] >= 2 && data[1] <= 5
}

// isLegacyTorch reports whether data starts like a file torch.save wrote in
// the legacy non-zip format: a pickle (of any protocol from 2, as
// pickle_protocol allows; from 4 in a FRAME) of torch's magic number. No
// safetensors file starts so: its header length would exceed the limit.
func isLegacyTorch(data []byte) bool {
	if !isPickle(data) {
		return false
	}
	rest := data[2:]
	if len(rest) >= 9 && rest[0] == opFrame {
		rest = rest[9:] // FRAME and its 8-byte length
	}
	return bytes.HasPrefix(rest, torchMagic)
}

// pytorchErrorf returns an error about the PyTorch file at path that wraps
// sentinel.
func pytorchErrorf(path string, sentinel error, format string, args ...any) error {
	return fmt.Errorf("pytorch %s: %s: %w", path, fmt.Sprintf(format, args...), sentinel)
}

// parsePyTorch reads the zip archive torch.save writes (data holds the whole
// file): records <prefix>/data.pkl, the pickled state_dict, and
// <prefix>/data/<key>, the raw little-endian bytes of each storage, plus
// small ones (version, byteorder) of which only byteorder is checked.
// data.pkl is interpreted by the restricted unpickler (pytorch_pickle.go).
//
// Every record must be stored uncompressed, as torch.save writes them, and
// lie inside the file; each storage record must hold exactly the element
// count its persistent id claims; and each tensor, a view (offset, sizes,
// strides) of a storage, must lie inside it. A view whose elements are
// contiguous in row-major order is read in place (TensorInfo.Offset is its
// position in the file); any other view (a transpose, a strided slice, a
// stride-0 expansion) is copied into memory in row-major order once, here,
// and has TensorInfo.Offset -1. Those copies together may take at most as
// many bytes as the file has, so a small forged file cannot make Open
// allocate much.
func parsePyTorch(path string, data []byte) (*header, map[string][]byte, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, nil, pytorchErrorf(path, api.ErrCorrupt, "zip archive: %v", err)
	}
	if len(zr.File) == 0 {
		return nil, nil, pytorchErrorf(path, api.ErrCorrupt, "empty zip archive")
	}
	records := make(map[string]*zip.File, len(zr.File))
	for _, f := range zr.File {
		if _, dup := records[f.Name]; dup {
			return nil, nil, pytorchErrorf(path, api.ErrCorrupt, "zip entry %q appears twice", truncate(f.Name))
		}
		records[f.Name] = f
	}
	// torch's reader takes the archive's directory name from its first entry.
	prefix, _, ok := strings.Cut(zr.File[0].Name, "/")
	if !ok {
		return nil, nil, pytorchErrorf(path, api.ErrCorrupt, "first zip entry %q is not inside a directory, as torch.save writes", truncate(zr.File[0].Name))
	}
	prefix += "/"
	if f, ok := records[prefix+"byteorder"]; ok {
		b, _, err := recordBytes(data, f)
		if err != nil {
			return nil, nil, fmt.Errorf("pytorch %s: %w", path, err)
		}
		if string(b) != "little" {
			return nil, nil, pytorchErrorf(path, api.ErrUnsupported, "byte order %q: only little-endian files are read", truncate(string(b)))
		}
	}
	pkl, ok := records[prefix+"data.pkl"]
	if !ok {
		return nil, nil, pytorchErrorf(path, api.ErrCorrupt, "no %sdata.pkl record", prefix)
	}
	pickle, _, err := recordBytes(data, pkl)
	if err != nil {
		return nil, nil, fmt.Errorf("pytorch %s: %w", path, err)
	}
	offsets := map[string]int64{} // storage key -> data offset, as resolved
	loadStorage := func(key string, dtype api.DType, numel int64) (*pyStorage, error) {
		f, ok := records[prefix+"data/"+key]
		if !ok {
			return nil, fmt.Errorf("storage %s: no zip record %sdata/%s: %w", keyText(key), prefix, truncate(key), api.ErrCorrupt)
		}
		off, ok := offsets[key]
		if !ok {
			var err error
			if _, off, err = recordBytes(data, f); err != nil {
				return nil, err
			}
			offsets[key] = off
		}
		size := int64(f.UncompressedSize64)
		if numel > math.MaxInt64/int64(dtype.Size()) || numel*int64(dtype.Size()) != size {
			return nil, fmt.Errorf("storage %s: %d %s elements do not fill its %d-byte record: %w", keyText(key), numel, dtype, size, api.ErrCorrupt)
		}
		return &pyStorage{dtype: dtype, key: key, numel: numel, offset: off}, nil
	}
	root, err := unpickle(pickle, loadStorage)
	if err != nil {
		return nil, nil, fmt.Errorf("pytorch %s: %sdata.pkl: %w", path, prefix, err)
	}
	dict, ok := root.(*pyDict)
	if !ok {
		return nil, nil, pytorchErrorf(path, api.ErrUnsupported, "%sdata.pkl holds %s, not a state_dict (a dict of tensors)", prefix, describe(root))
	}
	return stateDictTensors(path, data, dict)
}

// stateDictTensors validates the tensors of an unpickled state_dict and
// describes them, materialising the views that are not contiguous within
// a budget of len(data) bytes.
func stateDictTensors(path string, data []byte, dict *pyDict) (*header, map[string][]byte, error) {
	var (
		tensors = make([]TensorInfo, 0, len(dict.keys))
		copies  = map[string][]byte{}
		budget  = int64(len(data)) // bytes the copies may still take
	)
	for i, k := range dict.keys {
		name, ok := k.(string)
		if !ok {
			return nil, nil, pytorchErrorf(path, api.ErrUnsupported, "state_dict key %s is not a string", keyText(k))
		}
		t, ok := dict.vals[i].(*pyTensor)
		if !ok {
			return nil, nil, pytorchErrorf(path, api.ErrUnsupported, "tensor %s: the state_dict holds %s, not a tensor", keyText(name), describe(dict.vals[i]))
		}
		info, contiguous, err := viewInfo(t)
		if err != nil {
			return nil, nil, fmt.Errorf("pytorch %s: tensor %s: %w", path, keyText(name), err)
		}
		info.Name, info.File = name, path
		if !contiguous {
			if info.Size > budget {
				return nil, nil, pytorchErrorf(path, api.ErrUnsupported, "tensor %s: copying its strided view (%d bytes) would take more memory than the whole file holds", keyText(name), info.Size)
			}
			budget -= info.Size
			copies[name] = gather(data, t, info.Size)
			info.Offset = -1
		}
		tensors = append(tensors, info)
	}
	return &header{tensors: tensors}, copies, nil
}

// recordBytes returns a zip record's bytes in place and their offset in
// data, after checking that the record is stored uncompressed and
// unencrypted and lies inside data.
func recordBytes(data []byte, f *zip.File) ([]byte, int64, error) {
	const encrypted = 0x1
	name := truncate(f.Name)
	switch {
	case f.Flags&encrypted != 0:
		return nil, 0, fmt.Errorf("zip record %q is encrypted: %w", name, api.ErrUnsupported)
	case f.Method != zip.Store:
		return nil, 0, fmt.Errorf("zip record %q is compressed (method %d); torch.save stores every record uncompressed: %w", name, f.Method, api.ErrUnsupported)
	case f.CompressedSize64 != f.UncompressedSize64:
		return nil, 0, fmt.Errorf("stored zip record %q has a compressed size %d unlike its size %d: %w", name, f.CompressedSize64, f.UncompressedSize64, api.ErrCorrupt)
	}
	off, err := f.DataOffset()
	if err != nil {
		return nil, 0, fmt.Errorf("zip record %q: %v: %w", name, err, api.ErrCorrupt)
	}
	if off < 0 || off > int64(len(data)) || f.UncompressedSize64 > uint64(int64(len(data))-off) {
		return nil, 0, fmt.Errorf("zip record %q of %d bytes at offset %d runs past the end of the %d-byte file: %w", name, f.UncompressedSize64, off, len(data), api.ErrCorrupt)
	}
	return data[off : off+int64(f.UncompressedSize64)], off, nil
}

// viewInfo validates a tensor's view of its storage and returns its dtype,
// shape, byte size and Offset in the file, and whether its elements are
// contiguous in row-major order (only then does Offset locate them).
func viewInfo(t *pyTensor) (info TensorInfo, contiguous bool, err error) {
	s := t.storage
	if len(t.shape) != len(t.stride) {
		return info, false, fmt.Errorf("%d sizes but %d strides: %w", len(t.shape), len(t.stride), api.ErrCorrupt)
	}
	if t.offset < 0 {
		return info, false, fmt.Errorf("negative storage offset %d: %w", t.offset, api.ErrCorrupt)
	}
	shape := make(api.Shape, len(t.shape))
	for i, d := range t.shape {
		if d < 0 || t.stride[i] < 0 {
			return info, false, fmt.Errorf("sizes %v, strides %v: negative values: %w", t.shape, t.stride, api.ErrCorrupt)
		}
		if d > math.MaxInt {
			return info, false, fmt.Errorf("size %d is too large: %w", d, api.ErrCorrupt)
		}
		shape[i] = int(d)
	}
	if shape.Validate() != nil { // the sizes are non-negative: the count overflows
		return info, false, fmt.Errorf("sizes %v: element count overflows: %w", t.shape, api.ErrCorrupt)
	}
	numel := int64(shape.NumElements())
	size := int64(s.dtype.Size())
	if numel > math.MaxInt64/size {
		return info, false, fmt.Errorf("sizes %v of %s: byte size overflows: %w", t.shape, s.dtype, api.ErrCorrupt)
	}
	info = TensorInfo{DType: s.dtype, Shape: shape, Size: numel * size}
	if numel == 0 {
		if t.offset > s.numel {
			return info, false, fmt.Errorf("storage offset %d is past the %d elements of storage %s: %w", t.offset, s.numel, keyText(s.key), api.ErrCorrupt)
		}
		info.Offset = s.offset + t.offset*size
		return info, true, nil
	}
	// The last element a view reaches is offset + sum((size-1)*stride); each
	// partial sum is kept below the storage's element count, so nothing
	// overflows.
	last := t.offset
	for i, d := range t.shape {
		st := t.stride[i]
		if st != 0 && d-1 > (s.numel-last)/st {
			last = s.numel
			break
		}
		last += (d - 1) * st
	}
	if last >= s.numel {
		return info, false, fmt.Errorf("view (offset %d, sizes %v, strides %v) reaches past the %d elements of storage %s: %w", t.offset, t.shape, t.stride, s.numel, keyText(s.key), api.ErrCorrupt)
	}
	contiguous = true
	want := int64(1)
	for i := len(t.shape) - 1; i >= 0; i-- {
		if t.shape[i] == 1 {
			continue
		}
		if t.stride[i] != want {
			contiguous = false
			break
		}
		want *= t.shape[i]
	}
	info.Offset = s.offset + t.offset*size
	return info, contiguous, nil
}

// gather copies the elements of a validated view t of a storage in data
// into a new row-major buffer of n bytes. Runs along a last axis of
// stride 1 are copied whole.
func gather(data []byte, t *pyTensor, n int64) []byte {
	out := make([]byte, n)
	size := int64(t.storage.dtype.Size())
	src := data[t.storage.offset : t.storage.offset+t.storage.numel*size]
	shape, stride := t.shape, t.stride
	run := size // bytes copied at a time
	if k := len(shape) - 1; k >= 0 && stride[k] == 1 {
		run = shape[k] * size
		shape, stride = shape[:k], stride[:k]
	}
	idx := make([]int64, len(shape))
	elem := t.offset
	for pos := int64(0); pos < n; pos += run {
		copy(out[pos:pos+run], src[elem*size:elem*size+run])
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d]++
			elem += stride[d]
			if idx[d] < shape[d] {
				break
			}
			elem -= stride[d] * shape[d]
			idx[d] = 0
		}
	}
	return out
}

// truncate shortens a string from a file for an error message.
func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
