package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// readJSONL reads JSON lines: each line that is not blank must be a JSON
// object holding field; a string value is a document (an empty one is
// skipped), null is skipped, anything else is an error. A UTF-8 byte order
// mark at the start is ignored. Errors name the line.
func readJSONL(r *bufio.Reader, field string, emit func(string) error) error {
	var long []byte // a line longer than the reader's buffer
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, line...)
			if len(long) > MaxDocumentBytes {
				return fmt.Errorf("line %d: longer than %d bytes: %w", lineNo, int64(MaxDocumentBytes), api.ErrOutOfRange)
			}
			line, err = r.ReadSlice('\n')
		}
		if long != nil {
			line = append(long, line...)
			long = nil
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("line %d: %w", lineNo, err)
		}
		if lineNo == 1 {
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
		}
		if doc, ok, perr := jsonlText(line, field); perr != nil {
			return fmt.Errorf("line %d: %w", lineNo, perr)
		} else if ok {
			if err := emit(doc); err != nil {
				return fmt.Errorf("line %d: %w", lineNo, err)
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// jsonlText returns the text of field in one JSON line; ok is false for a
// blank line, a null or an empty string.
func jsonlText(line []byte, field string) (doc string, ok bool, err error) {
	line = bytes.Trim(line, " \t\r\n") // JSON white space
	if len(line) == 0 {
		return "", false, nil
	}
	if line[0] != '{' {
		return "", false, fmt.Errorf("not a JSON object: %w", api.ErrCorrupt)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return "", false, fmt.Errorf("%v: %w", err, api.ErrCorrupt)
	}
	raw, found := obj[field]
	if !found {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, fmt.Sprintf("%q", k))
		}
		slices.Sort(keys)
		return "", false, fmt.Errorf("no field %q (the line has %s): %w", field, strings.Join(keys, ", "), api.ErrNotFound)
	}
	if string(raw) == "null" {
		return "", false, nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", false, fmt.Errorf("field %q is %s, not a string: %w", field, jsonKind(raw), api.ErrCorrupt)
	}
	if !utf8.Valid(raw) {
		return "", false, fmt.Errorf("field %q is not valid UTF-8: %w", field, api.ErrCorrupt)
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", false, fmt.Errorf("field %q: %v: %w", field, err, api.ErrCorrupt)
	}
	return doc, doc != "", nil
}

// jsonKind names the kind of a JSON value for errors.
func jsonKind(raw []byte) string {
	switch {
	case len(raw) == 0:
		return "empty"
	case raw[0] == '{':
		return "an object"
	case raw[0] == '[':
		return "an array"
	case raw[0] == 't' || raw[0] == 'f':
		return "a boolean"
	default:
		return "a number"
	}
}
