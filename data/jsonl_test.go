package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

func readAllJSONL(data []byte, field string, bufSize int) ([]string, error) {
	var docs []string
	err := readJSONL(bufio.NewReaderSize(bytes.NewReader(data), bufSize), field, func(d string) error {
		docs = append(docs, d)
		return nil
	})
	return docs, err
}

func TestJSONL(t *testing.T) {
	in := "\uFEFF{\"text\": \"a\"}\r\n" + // byte order mark, CRLF
		"\n   \t\n" + // blank lines
		`{"text": null, "x": 1}` + "\n" +
		`{"text": ""}` + "\n" +
		`{"x": {"text": "nested is not the field"}, "text": "b\u00e9\n"}` + "\n" +
		`{"text": "no newline at the end"}`
	want := []string{"a", "bé\n", "no newline at the end"}
	// A small buffer makes lines longer than it, read in pieces.
	for _, size := range []int{16, 4096} {
		docs, err := readAllJSONL([]byte(in), "text", size)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(docs, want) {
			t.Errorf("buffer %d: %q, want %q", size, docs, want)
		}
	}
	if _, err := readAllJSONL([]byte(`{"text": "ok"}`+"\n"+`{"text": "a\xffb"}`), "text", 4096); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("invalid UTF-8: error %v, want ErrCorrupt", err)
	}
}

// FuzzJSONL checks that the JSONL reader never panics, yields only
// non-empty valid UTF-8, and agrees with encoding/json line by line.
func FuzzJSONL(f *testing.F) {
	f.Add([]byte(`{"text": "a"}` + "\n" + `{"text": null}`))
	f.Add([]byte(`{"text": "\ud83d\ude00 \u0000"}` + "\n\n" + `{"y": 1}`))
	f.Add([]byte("{\"text\": \"x\"}\r\n[1]\n"))
	f.Add([]byte(`{"text": {"a": "b"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := readAllJSONL(data, "text", 16)
		docs2, err2 := readAllJSONL(data, "text", 1<<16)
		if (err == nil) != (err2 == nil) || !slices.Equal(docs, docs2) {
			t.Fatalf("buffer sizes disagree: %q %v / %q %v", docs, err, docs2, err2)
		}
		for _, d := range docs {
			if d == "" || !utf8.ValidString(d) {
				t.Fatalf("document %q", d)
			}
		}
		if err != nil {
			if !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrNotFound) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		// Every non-blank line is an object whose "text" json decodes to
		// the document (or to null or "").
		var want []string
		for i, line := range bytes.Split(bytes.TrimPrefix(data, []byte("\uFEFF")), []byte("\n")) {
			line = bytes.Trim(line, " \t\r\n")
			if len(line) == 0 {
				continue
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(line, &obj); err != nil || obj == nil {
				t.Fatalf("line %d %q accepted, json says %v", i+1, line, err)
			}
			var s *string
			if err := json.Unmarshal(obj["text"], &s); err != nil {
				t.Fatalf("line %d %q accepted, json says %v", i+1, line, err)
			}
			if s != nil && *s != "" {
				want = append(want, *s)
			}
		}
		if !slices.Equal(docs, want) {
			t.Fatalf("documents %q, json gives %q", docs, want)
		}
	})
}
