package data

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// fixtureCase is one case of testdata/expected.json, written by
// scripts/make_data_fixtures.py.
type fixtureCase struct {
	Name      string   `json:"name"`
	Specs     []string `json:"specs"`
	Field     string   `json:"field"`
	Exts      []string `json:"exts"`
	Files     []string `json:"files"`
	Documents []string `json:"documents"`
}

func loadCases(t *testing.T) []fixtureCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		Cases []fixtureCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	if len(exp.Cases) < 10 {
		t.Fatalf("expected.json has %d cases", len(exp.Cases))
	}
	return exp.Cases
}

func inTestdata(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Join("testdata", p)
	}
	return out
}

// collect returns every document of c.
func collect(t *testing.T, c *Corpus) []string {
	t.Helper()
	var docs []string
	if err := c.Documents(context.Background(), func(doc string) error {
		docs = append(docs, doc)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return docs
}

func TestFixtures(t *testing.T) {
	for _, tc := range loadCases(t) {
		t.Run(tc.Name, func(t *testing.T) {
			c, err := Open(inTestdata(tc.Specs), SourceOptions{Field: tc.Field, Exts: tc.Exts})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := c.Files(), inTestdata(tc.Files); !slices.Equal(got, want) {
				t.Errorf("files %q, want %q", got, want)
			}
			var size int64
			for _, f := range c.Files() {
				st, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				size += st.Size()
			}
			if c.Bytes() != size {
				t.Errorf("Bytes %d, want %d", c.Bytes(), size)
			}
			docs := collect(t, c)
			if !slices.Equal(docs, tc.Documents) {
				t.Errorf("documents\n%q\nwant\n%q", docs, tc.Documents)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	c, err := Open([]string{"testdata/parquet", "testdata/hf_disk", "testdata/ipc_file.arrow", "testdata/folder"}, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	calls := 0
	err = c.DocumentsProgress(context.Background(), func(string) error { return nil }, func(n int64) {
		if n < last || n > c.Bytes() {
			t.Errorf("progress %d after %d (total %d)", n, last, c.Bytes())
		}
		last = n
		calls++
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != c.Bytes() || calls < len(c.Files()) {
		t.Errorf("progress ended at %d after %d calls, want %d after at least %d", last, calls, c.Bytes(), len(c.Files()))
	}
}

func TestOpenErrors(t *testing.T) {
	dict := t.TempDir()
	os.WriteFile(filepath.Join(dict, "dataset_dict.json"), []byte(`{"splits": ["train"]}`), 0o644)
	for _, tc := range []struct {
		name  string
		specs []string
		o     SourceOptions
		is    error
		says  []string
	}{
		{"no specs", nil, SourceOptions{}, api.ErrConfig, nil},
		{"missing file", []string{"testdata/nope.txt"}, SourceOptions{}, api.ErrNotFound, []string{"testdata/nope.txt"}},
		{"glob without match", []string{"testdata/folder/*.nothing"}, SourceOptions{}, api.ErrNotFound, []string{"*.nothing", "no match"}},
		{"glob under missing folder", []string{"testdata/nowhere/**/*.txt"}, SourceOptions{}, api.ErrNotFound, []string{"no match"}},
		{"bad pattern", []string{"testdata/folder/[a-"}, SourceOptions{}, api.ErrConfig, []string{"bad pattern"}},
		{"folder without match", []string{"testdata/folder"}, SourceOptions{Exts: []string{".rs"}}, api.ErrNotFound, []string{"testdata/folder"}},
		{"parquet column", []string{"testdata/parquet/train.parquet"}, SourceOptions{Field: "content"}, api.ErrNotFound,
			[]string{`"content"`, `"id"`, `"text"`, "train.parquet"}},
		{"arrow stream column", []string{"testdata/hf_disk"}, SourceOptions{Field: "body"}, api.ErrNotFound,
			[]string{`"body"`, `"text"`, `"label"`}},
		{"arrow file column", []string{"testdata/ipc_file.arrow"}, SourceOptions{Field: "title"}, api.ErrNotFound,
			[]string{`"title"`, `"id"`, `"text"`, `"body"`}},
		{"arrow non-string column", []string{"testdata/ipc_file.arrow"}, SourceOptions{Field: "id"}, api.ErrUnsupported, []string{"int64"}},
		{"parquet non-string column", []string{"testdata/parquet/train.parquet"}, SourceOptions{Field: "id"}, api.ErrUnsupported, []string{`"id"`}},
		{"binary named", []string{"testdata/folder/image.bin"}, SourceOptions{}, api.ErrCorrupt, []string{"image.bin"}},
		{"dataset dict", []string{dict}, SourceOptions{}, api.ErrConfig, []string{"DatasetDict"}},
		{"empty spec", []string{""}, SourceOptions{}, api.ErrConfig, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.specs, tc.o)
			if !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestDocumentErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read := func(spec string, field string) error {
		c, err := Open([]string{spec}, SourceOptions{Field: field})
		if err != nil {
			return err
		}
		return c.Documents(context.Background(), func(string) error { return nil })
	}
	for _, tc := range []struct {
		name, file, text string
		is               error
		says             string
	}{
		{"missing field", "a.jsonl", "{\"text\": \"x\"}\n{\"body\": \"y\", \"n\": 1}\n", api.ErrNotFound, `a.jsonl: line 2: no field "text" (the line has "body", "n")`},
		{"number", "b.jsonl", `{"text": 3}`, api.ErrCorrupt, "line 1: field \"text\" is a number"},
		{"not an object", "c.ndjson", "[1, 2]\n", api.ErrCorrupt, "line 1: not a JSON object"},
		{"bad json", "d.jsonl", "{\"text\": \"x\"}\n\n{\"text\": \"unterminated}\n", api.ErrCorrupt, "line 3"},
		{"latin-1 named", "e.txt", "caf\xe9", api.ErrCorrupt, "e.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := read(write(tc.file, tc.text), "")
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want %v saying %q", err, tc.is, tc.says)
			}
		})
	}
}

// readBytes reads the documents of a Parquet or Arrow file held in memory.
func readBytes(ext string, b []byte, field string) ([]string, error) {
	var docs []string
	emit := func(d string) error {
		docs = append(docs, d)
		return nil
	}
	if ext == ".parquet" {
		return docs, readParquet(bytes.NewReader(b), field, emit)
	}
	return docs, readArrow(bytes.NewReader(b), int64(len(b)), field, emit)
}

// TestCorruptFiles feeds truncated and damaged copies of the Parquet and
// Arrow fixtures to the readers: they must fail with a classified error (or
// read the damaged file, when the damage is harmless), never panic or
// allocate without bound.
func TestCorruptFiles(t *testing.T) {
	for _, name := range []string{"parquet/train.parquet", "hf_disk/data-00000-of-00001.arrow", "ipc_file.arrow"} {
		good, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		ext := filepath.Ext(name)
		if _, err := readBytes(ext, good, "text"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		failed := 0
		for i, bad := range damaged(good) {
			_, err := readBytes(ext, bad, "text")
			if err != nil {
				failed++
				if !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrNotFound) && !errors.Is(err, api.ErrUnsupported) {
					t.Errorf("%s variant %d: unclassified error %v", name, i, err)
				}
			}
		}
		if failed == 0 {
			t.Errorf("%s: no damaged copy was refused", name)
		}
	}
	// Through Open and Documents: a truncated file fails with its name.
	dir := t.TempDir()
	for _, name := range []string{"parquet/train.parquet", "hf_disk/data-00000-of-00001.arrow", "ipc_file.arrow"} {
		good, _ := os.ReadFile(filepath.Join("testdata", name))
		p := filepath.Join(dir, filepath.Base(name))
		os.WriteFile(p, good[:len(good)*2/3], 0o644)
		c, err := Open([]string{p}, SourceOptions{})
		if err == nil {
			err = c.Documents(context.Background(), func(string) error { return nil })
		}
		if !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s truncated: error %v", name, err)
		}
	}
}

// damaged returns truncations of b and copies with each byte flipped, and
// with a large length written at every fourth byte.
func damaged(b []byte) [][]byte {
	var out [][]byte
	for _, n := range []int{0, 4, 8, len(b) / 3, len(b) / 2, len(b) - 8, len(b) - 1} {
		out = append(out, slices.Clone(b[:n]))
	}
	for i := 0; i < len(b); i++ {
		c := slices.Clone(b)
		c[i] ^= 0xFF
		out = append(out, c)
		if i%4 == 0 {
			c = slices.Clone(b)
			copy(c[i:], []byte{0xFF, 0xFF, 0xFF, 0x7F})
			out = append(out, c)
		}
	}
	return out
}

func TestDocumentsStops(t *testing.T) {
	c, err := Open([]string{"testdata/docs.jsonl", "testdata/folder"}, SourceOptions{Field: "content"})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	n := 0
	err = c.Documents(context.Background(), func(string) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Errorf("error %v after %d documents, want the callback's error after 3", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = c.Documents(ctx, func(string) error {
		n++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("error %v after %d documents, want context.Canceled after 1", err, n)
	}
}

func TestGlobs(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a/x.txt", "a/b/y.txt", "a/b/c/z.txt", "a/.h/w.txt", "a/b/.v.txt", "m.md", "a/b/c/n.md"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("doc "+f), 0o644)
	}
	for _, tc := range []struct {
		pattern string
		exts    []string
		want    []string
	}{
		{"**/*.txt", nil, []string{"a/b/c/z.txt", "a/b/y.txt", "a/x.txt"}},
		{"a/**/z.txt", nil, []string{"a/b/c/z.txt"}},
		{"a/**", nil, []string{"a/b/c/n.md", "a/b/c/z.txt", "a/b/y.txt", "a/x.txt"}},
		{"a/**", []string{"md"}, []string{"a/b/c/n.md"}},
		{"**/.*.txt", nil, []string{"a/b/.v.txt"}},
		{"a/.h/*", nil, []string{"a/.h/w.txt"}},
		{"a/?/*.txt", nil, []string{"a/b/y.txt"}},
		{"a/b", nil, []string{"a/b/c/n.md", "a/b/c/z.txt", "a/b/y.txt"}},
		{"*", nil, []string{"a/b/c/n.md", "a/b/c/z.txt", "a/b/y.txt", "a/x.txt", "m.md"}},
		{"[ab]/*/[xyz].txt", nil, []string{"a/b/y.txt"}},
	} {
		c, err := Open([]string{filepath.Join(dir, tc.pattern)}, SourceOptions{Exts: tc.exts})
		if err != nil {
			t.Errorf("%s: %v", tc.pattern, err)
			continue
		}
		var got []string
		for _, f := range c.Files() {
			rel, _ := filepath.Rel(dir, f)
			got = append(got, filepath.ToSlash(rel))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: files %q, want %q", tc.pattern, got, tc.want)
		}
	}
}

func TestSniffText(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("a", sniffSize-1) + "é" + strings.Repeat("b", 100) // é cut by the sample
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"", true},
		{"plain\n", true},
		{long, true},
		{strings.Repeat("a", sniffSize-1) + "\xc3", false}, // cut character at the real end
		{"nul\x00byte", false},
		{"caf\xe9", false},
		{strings.Repeat("a", sniffSize+10) + "\xff", true}, // beyond the sample: found at read time
	} {
		p := filepath.Join(dir, "f.txt")
		os.WriteFile(p, []byte(tc.text), 0o644)
		if got, err := sniffText(p); err != nil || got != tc.want {
			t.Errorf("%.20q (%d bytes): %t, %v; want %t", tc.text, len(tc.text), got, err, tc.want)
		}
	}
	// A walked file that fails the full check is skipped; a named one fails.
	sub := filepath.Join(dir, "walk")
	os.MkdirAll(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "bad.txt"), []byte(strings.Repeat("a", sniffSize+10)+"\xff"), 0o644)
	os.WriteFile(filepath.Join(sub, "good.txt"), []byte("good"), 0o644)
	c, err := Open([]string{sub}, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if docs := collect(t, c); !slices.Equal(docs, []string{"good"}) {
		t.Errorf("walked folder: %q", docs)
	}
	c, err = Open([]string{filepath.Join(sub, "bad.txt")}, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Documents(context.Background(), func(string) error { return nil }); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("named file with a bad byte late: error %v", err)
	}
}
