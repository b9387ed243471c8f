package checkpoint

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// maxHeaderSize bounds the JSON header of a safetensors file (as the
// reference implementation does), so that a forged length cannot make Open
// read or parse an unbounded amount.
const maxHeaderSize = 100 << 20

// metadataKey is the header entry that holds the free-form string metadata.
const metadataKey = "__metadata__"

// corruptf returns an error about file that wraps api.ErrCorrupt.
func corruptf(file, format string, args ...any) error {
	return fmt.Errorf("safetensors %s: %s: %w", file, fmt.Sprintf(format, args...), api.ErrCorrupt)
}

// tensorCorruptf returns an error about one tensor of file that wraps
// api.ErrCorrupt.
func tensorCorruptf(file, name, format string, args ...any) error {
	return fmt.Errorf("safetensors %s: tensor %q: %s: %w", file, name, fmt.Sprintf(format, args...), api.ErrCorrupt)
}

// header is the validated content of a safetensors header. Offsets in
// tensors are absolute positions in the file.
type header struct {
	tensors  []TensorInfo // in data order
	metadata map[string]string
}

// rawEntry is a header entry as written, before validation.
type rawEntry struct {
	name    string
	dtype   string
	shape   []uint64
	offsets []uint64
}

// parseHeader validates the layout of a whole safetensors file held in data
// and returns its tensors and metadata. file names the file in errors.
func parseHeader(file string, data []byte) (*header, error) {
	size := uint64(len(data))
	if size < 8 {
		return nil, corruptf(file, "%d bytes is too short for the 8-byte header length", size)
	}
	n := binary.LittleEndian.Uint64(data)
	if n > maxHeaderSize {
		return nil, corruptf(file, "header length %d exceeds the limit of %d bytes", n, maxHeaderSize)
	}
	if n > size-8 {
		return nil, corruptf(file, "header length %d runs past the end of the %d-byte file", n, size)
	}
	text := data[8 : 8+n]
	if len(text) == 0 || text[0] != '{' {
		return nil, corruptf(file, "header does not start with '{'")
	}
	if !utf8.Valid(text) {
		return nil, corruptf(file, "header is not valid UTF-8")
	}
	entries, metadata, err := decodeHeader(text)
	if err != nil {
		return nil, corruptf(file, "header: %v", err)
	}
	tensors, err := layout(file, entries, int64(8+n), int64(size-8-n))
	if err != nil {
		return nil, err
	}
	return &header{tensors: tensors, metadata: metadata}, nil
}

// decodeHeader parses the header JSON, rejecting duplicate keys at every
// level (encoding/json would silently keep the last one).
func decodeHeader(text []byte) ([]rawEntry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	if err := expectDelim(dec, '{', "the header"); err != nil {
		return nil, nil, err
	}
	var (
		entries  []rawEntry
		metadata map[string]string
		seen     = map[string]bool{}
	)
	for dec.More() {
		key, err := objectKey(dec, seen, "the header")
		if err != nil {
			return nil, nil, err
		}
		if key == metadataKey {
			if metadata, err = decodeStringMap(dec, metadataKey, true); err != nil {
				return nil, nil, err
			}
			continue
		}
		e, err := decodeEntry(dec, key)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if err := expectEnd(dec, "the header"); err != nil {
		return nil, nil, err
	}
	if err := expectEOF(dec, "the header object"); err != nil {
		return nil, nil, err
	}
	return entries, metadata, nil
}

// decodeEntry parses one tensor entry. Unknown keys are skipped, as the
// reference implementation does.
func decodeEntry(dec *json.Decoder, name string) (rawEntry, error) {
	e := rawEntry{name: name}
	what := fmt.Sprintf("tensor %q", name)
	if err := expectDelim(dec, '{', what); err != nil {
		return e, err
	}
	seen := map[string]bool{}
	for dec.More() {
		key, err := objectKey(dec, seen, what)
		if err != nil {
			return e, err
		}
		switch key {
		case "dtype":
			tok, err := dec.Token()
			if err != nil {
				return e, fmt.Errorf("%s: dtype: %w", what, err)
			}
			s, ok := tok.(string)
			if !ok {
				return e, fmt.Errorf("%s: dtype is %s, not a string", what, tokenText(tok))
			}
			e.dtype = s
		case "shape":
			if e.shape, err = decodeInts(dec, what+" shape"); err != nil {
				return e, err
			}
		case "data_offsets":
			if e.offsets, err = decodeInts(dec, what+" data_offsets"); err != nil {
				return e, err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return e, fmt.Errorf("%s: %q: %w", what, key, err)
			}
		}
	}
	if err := expectEnd(dec, what); err != nil {
		return e, err
	}
	switch {
	case !seen["dtype"]:
		return e, fmt.Errorf("%s has no dtype", what)
	case !seen["shape"]:
		return e, fmt.Errorf("%s has no shape", what)
	case !seen["data_offsets"]:
		return e, fmt.Errorf("%s has no data_offsets", what)
	}
	return e, nil
}

// decodeInts parses a JSON array of non-negative integers. One Decode call
// keeps allocation proportional to the array, not to its number of tokens.
func decodeInts(dec *json.Decoder, what string) ([]uint64, error) {
	var out []uint64
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("%s is not an array of non-negative integers: %w", what, err)
	}
	if out == nil {
		return nil, fmt.Errorf("%s is null, not an array", what)
	}
	return out, nil
}

// decodeStringMap parses a JSON object of string values, rejecting duplicate
// keys. With nullable, a JSON null gives an empty map.
func decodeStringMap(dec *json.Decoder, what string, nullable bool) (map[string]string, error) {
	m := map[string]string{}
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if tok == nil && nullable {
		return m, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s is %s, not an object", what, tokenText(tok))
	}
	seen := map[string]bool{}
	for dec.More() {
		key, err := objectKey(dec, seen, what)
		if err != nil {
			return nil, err
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", what, key, err)
		}
		s, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%s: %q is %s, not a string", what, key, tokenText(tok))
		}
		m[key] = s
	}
	if err := expectEnd(dec, what); err != nil {
		return nil, err
	}
	return m, nil
}

// expectDelim reads the next token and checks that it is the delimiter d.
func expectDelim(dec *json.Decoder, d json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		kind := "an object"
		if d == '[' {
			kind = "an array"
		}
		return fmt.Errorf("%s is %s, not %s", what, tokenText(tok), kind)
	}
	return nil
}

// expectEnd consumes the closing delimiter of the current object or array
// (the decoder has checked that it matches).
func expectEnd(dec *json.Decoder, what string) error {
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// objectKey reads the next key of an object and rejects a key already in
// seen.
func objectKey(dec *json.Decoder, seen map[string]bool, what string) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	key, ok := tok.(string)
	if !ok { // the decoder reports a syntax error first; this is a safety net
		return "", fmt.Errorf("%s has the key %s, not a string", what, tokenText(tok))
	}
	if seen[key] {
		return "", fmt.Errorf("%s has the key %q twice", what, key)
	}
	seen[key] = true
	return key, nil
}

// expectEOF checks that only white space follows the top-level value.
func expectEOF(dec *json.Decoder, what string) error {
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("after %s: %w", what, err)
	}
	return fmt.Errorf("%s follows %s", tokenText(tok), what)
}

// tokenText describes a JSON token for an error message.
func tokenText(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(v)
	case json.Delim:
		switch v {
		case '{', '}':
			return "an object"
		case '[', ']':
			return "an array"
		}
	}
	return fmt.Sprint(tok)
}

// layout validates the entries' dtypes, shapes and offsets against a data
// section of dataSize bytes starting at dataStart, and returns them in data
// order with absolute offsets.
func layout(file string, entries []rawEntry, dataStart, dataSize int64) ([]TensorInfo, error) {
	tensors := make([]TensorInfo, len(entries))
	for i, e := range entries {
		dt, err := api.ParseDType(e.dtype)
		if err == nil && dt.Block() != 1 {
			err = fmt.Errorf("dtype %q is not a safetensors dtype: %w", e.dtype, api.ErrUnsupported)
		}
		if err != nil {
			return nil, fmt.Errorf("safetensors %s: tensor %q: %w", file, e.name, err)
		}
		count := uint64(1)
		shape := make(api.Shape, len(e.shape))
		for j, d := range e.shape {
			if d > math.MaxInt {
				return nil, tensorCorruptf(file, e.name, "shape %v: size %d is too large", e.shape, d)
			}
			shape[j] = int(d)
			hi, lo := bits.Mul64(count, d)
			if hi != 0 || lo > math.MaxInt64 {
				return nil, tensorCorruptf(file, e.name, "shape %v: element count overflows", e.shape)
			}
			count = lo
		}
		hi, nbytes := bits.Mul64(count, uint64(dt.Size()))
		if hi != 0 || nbytes > math.MaxInt64 {
			return nil, tensorCorruptf(file, e.name, "shape %v of %s: byte size overflows", e.shape, dt)
		}
		if len(e.offsets) != 2 {
			return nil, tensorCorruptf(file, e.name, "data_offsets %v: want [begin, end]", e.offsets)
		}
		begin, end := e.offsets[0], e.offsets[1]
		switch {
		case begin > end:
			return nil, tensorCorruptf(file, e.name, "data_offsets %v: begin after end", e.offsets)
		case end > uint64(dataSize):
			return nil, tensorCorruptf(file, e.name, "data_offsets %v: past the %d-byte data section", e.offsets, dataSize)
		case end-begin != nbytes:
			return nil, tensorCorruptf(file, e.name, "data_offsets %v span %d bytes, but %s%v needs %d", e.offsets, end-begin, dt, shape, nbytes)
		}
		tensors[i] = TensorInfo{
			Name: e.name, DType: dt, Shape: shape,
			File: file, Offset: dataStart + int64(begin), Size: int64(end - begin),
		}
	}
	slices.SortStableFunc(tensors, func(a, b TensorInfo) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Size, b.Size))
	})
	pos := dataStart
	for i, t := range tensors {
		switch {
		case t.Offset < pos:
			return nil, tensorCorruptf(file, t.Name, "data overlaps tensor %q", tensors[i-1].Name)
		case t.Offset > pos:
			return nil, tensorCorruptf(file, t.Name, "%d unused bytes before its data", t.Offset-pos)
		}
		pos += t.Size
	}
	if pos != dataStart+dataSize {
		return nil, corruptf(file, "%d bytes at the end of the data section belong to no tensor", dataStart+dataSize-pos)
	}
	return tensors, nil
}
