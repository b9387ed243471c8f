package data

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/tokenizer"
)

var (
	gpt2Once sync.Once
	gpt2Tok  *tokenizer.Tokenizer
	gpt2Err  error
)

// gpt2 returns the small byte-level BPE tokenizer of the tokenizer tests
// (vocabulary 1001, <|endoftext|> = 0).
func gpt2(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = tokenizer.Load("../tokenizer/testdata/gpt2.json") })
	if gpt2Err != nil {
		t.Fatal(gpt2Err)
	}
	return gpt2Tok
}

// readTokens returns every token of a token file.
func readTokens(t *testing.T, path string) []int32 {
	t.Helper()
	tk, err := OpenTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	out := make([]int32, tk.Len())
	if err := tk.Read(0, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// splitAt cuts tokens after each sep.
func splitAt(toks []int32, sep int32) [][]int32 {
	var out [][]int32
	start := 0
	for i, v := range toks {
		if v == sep {
			out = append(out, toks[start:i+1])
			start = i + 1
		}
	}
	if start != len(toks) {
		out = append(out, toks[start:])
	}
	return out
}

// encodeOne encodes a document as Build must: EncodeFull without special
// tokens, then the separator.
func encodeOne(t *testing.T, tok *tokenizer.Tokenizer, doc string, sep int32) []int32 {
	t.Helper()
	e, err := tok.EncodeFull(doc, false)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int32, 0, len(e.IDs)+1)
	for _, id := range e.IDs {
		out = append(out, int32(id))
	}
	return append(out, sep)
}

func fixtureCorpus(t *testing.T) *Corpus {
	t.Helper()
	c, err := Open([]string{"testdata/folder", "testdata/parquet", "testdata/hf_disk", "testdata/ipc_file.arrow"}, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBuildMatchesEncode(t *testing.T) {
	tok := gpt2(t)
	c := fixtureCorpus(t)
	docs := collect(t, c)
	const sep = 0
	var files [][]byte
	for _, workers := range []int{1, 4} {
		dir := t.TempDir()
		var last int64
		stats, err := Build(context.Background(), c, dir, BuildOptions{
			Tokenizer: tok, TokenizerHash: "gpt2", Separator: sep, ValFraction: 0.3, Workers: workers,
			Progress: func(done, total int64) {
				if done < last || total != c.Bytes() || done > total {
					t.Errorf("progress %d/%d after %d", done, total, last)
				}
				last = done
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if last != c.Bytes() {
			t.Errorf("progress ended at %d of %d", last, c.Bytes())
		}
		train := readTokens(t, filepath.Join(dir, TrainFile))
		val := readTokens(t, filepath.Join(dir, ValFile))
		// Each file is a subsequence of the documents in order; together
		// they hold every document once.
		tdocs, vdocs := splitAt(train, sep), splitAt(val, sep)
		var nt, nv int
		var textBytes int64
		for i, d := range docs {
			want := encodeOne(t, tok, d, sep)
			textBytes += int64(len(d))
			inVal := false
			switch {
			case nt < len(tdocs) && slices.Equal(tdocs[nt], want):
				nt++
			case nv < len(vdocs) && slices.Equal(vdocs[nv], want):
				nv++
				inVal = true
			default:
				t.Fatalf("workers %d: document %d (%q) is in neither file at its place", workers, i, d)
			}
			if inVal != isValidation(int64(i), 0.3) {
				t.Errorf("document %d: in validation %t, the hash says %t", i, inVal, !inVal)
			}
		}
		if nt != len(tdocs) || nv != len(vdocs) || nv == 0 || nt == 0 {
			t.Errorf("workers %d: %d+%d documents placed of %d+%d", workers, nt, nv, len(tdocs), len(vdocs))
		}
		want := BuildStats{Documents: int64(len(docs)), ValDocuments: int64(nv),
			TrainTokens: int64(len(train)), ValTokens: int64(len(val)), Bytes: textBytes}
		if stats != want {
			t.Errorf("workers %d: stats %+v, want %+v", workers, stats, want)
		}
		var both []byte
		for _, name := range []string{TrainFile, ValFile} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			both = append(both, b...)
		}
		files = append(files, both)
		if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
			t.Errorf("temporary files left: %v", left)
		}
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Error("1 and 4 workers wrote different files")
	}
}

// writeDocs writes docs as a JSONL file and opens it.
func writeDocs(t *testing.T, docs ...string) *Corpus {
	t.Helper()
	var b bytes.Buffer
	for _, d := range docs {
		b.WriteString(`{"text": "` + d + `"}` + "\n")
	}
	path := filepath.Join(t.TempDir(), "docs.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Open([]string{path}, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBuildSplitNotEmpty checks that neither split is left empty: when the
// hash draws no document for one side, the last document moves there.
func TestBuildSplitNotEmpty(t *testing.T) {
	tok := gpt2(t)
	c := writeDocs(t, "first document", "second document")
	lo := min(docHash(0), docHash(1))
	hi := max(docHash(0), docHash(1))
	first, second := encodeOne(t, tok, "first document", 0), encodeOne(t, tok, "second document", 0)
	for _, tc := range []struct {
		frac       float64
		train, val []int32
	}{
		{lo / 2, first, second},                          // none drawn: the last goes to validation
		{(1 + hi) / 2, second, first},                    // both drawn: the last goes to training
		{(lo + hi) / 2, nil, nil},                        // one drawn: as the hash says
		{0, append(slices.Clone(first), second...), nil}, // no validation asked
	} {
		dir := t.TempDir()
		stats, err := Build(context.Background(), c, dir, BuildOptions{Tokenizer: tok, ValFraction: tc.frac, Separator: 0})
		if err != nil {
			t.Fatal(err)
		}
		train, val := readTokens(t, filepath.Join(dir, TrainFile)), readTokens(t, filepath.Join(dir, ValFile))
		if tc.train == nil && tc.val == nil {
			if stats.ValDocuments != 1 {
				t.Errorf("fraction %v: %d validation documents", tc.frac, stats.ValDocuments)
			}
			continue
		}
		if !slices.Equal(train, tc.train) || !slices.Equal(val, tc.val) {
			t.Errorf("fraction %v: train %v val %v, want %v and %v", tc.frac, train, val, tc.train, tc.val)
		}
		if stats.TrainTokens != int64(len(train)) || stats.ValTokens != int64(len(val)) {
			t.Errorf("fraction %v: stats %+v", tc.frac, stats)
		}
	}
}

func TestSplitFraction(t *testing.T) {
	n, drawn := 20000, 0
	for i := range n {
		if isValidation(int64(i), 0.1) {
			drawn++
		}
	}
	if math.Abs(float64(drawn)/float64(n)-0.1) > 0.01 {
		t.Errorf("%d of %d drawn at 0.1", drawn, n)
	}
}

func TestBuildErrors(t *testing.T) {
	tok := gpt2(t)
	c := writeDocs(t, "a", "b")
	for _, tc := range []struct {
		name string
		c    *Corpus
		o    BuildOptions
		is   error
	}{
		{"no tokenizer", c, BuildOptions{}, api.ErrConfig},
		{"no corpus", nil, BuildOptions{Tokenizer: tok}, api.ErrConfig},
		{"separator", c, BuildOptions{Tokenizer: tok, Separator: int32(tok.VocabSize())}, api.ErrOutOfRange},
		{"separator -2", c, BuildOptions{Tokenizer: tok, Separator: -2}, api.ErrConfig},
		{"fraction 1", c, BuildOptions{Tokenizer: tok, ValFraction: 1}, api.ErrConfig},
		{"fraction NaN", c, BuildOptions{Tokenizer: tok, ValFraction: math.NaN()}, api.ErrConfig},
		{"workers", c, BuildOptions{Tokenizer: tok, Workers: -1}, api.ErrConfig},
		{"no documents", writeDocs(t, ""), BuildOptions{Tokenizer: tok}, api.ErrNotFound},
	} {
		if _, err := Build(context.Background(), tc.c, t.TempDir(), tc.o); !errors.Is(err, tc.is) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.is)
		}
	}
}

func TestBuildCancel(t *testing.T) {
	tok := gpt2(t)
	docs := make([]string, 200)
	for i := range docs {
		docs[i] = "document number " + string(rune('a'+i%26))
	}
	c := writeDocs(t, docs...)
	dir := t.TempDir()
	o := BuildOptions{Tokenizer: tok, TokenizerHash: "h", Separator: 0, ValFraction: 0.1, Workers: 2}
	if _, err := Build(context.Background(), c, dir, o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.Progress = func(done, total int64) { cancel() }
	_, err := Build(ctx, c, dir, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if _, ok := UpToDate(dir, c, BuildOptions{Tokenizer: tok, TokenizerHash: "h", Separator: 0, ValFraction: 0.1}); ok {
		t.Error("a cancelled build is taken as up to date")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, c, t.TempDir(), o); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: error %v", err)
	}
}

func TestUpToDate(t *testing.T) {
	tok := gpt2(t)
	c := writeDocs(t, "one", "two", "three")
	dir := t.TempDir()
	o := BuildOptions{Tokenizer: tok, TokenizerHash: "h1", Separator: 0, ValFraction: 0.2}
	if _, ok := UpToDate(dir, c, o); ok {
		t.Fatal("up to date before any build")
	}
	stats, err := Build(context.Background(), c, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := UpToDate(dir, c, o); !ok || got != stats {
		t.Fatalf("UpToDate = %+v, %t after a build giving %+v", got, ok, stats)
	}
	o.Workers, o.Progress = 3, func(int64, int64) {}
	if _, ok := UpToDate(dir, c, o); !ok {
		t.Error("workers and progress changed the verdict")
	}
	for name, change := range map[string]func(o *BuildOptions){
		"hash":      func(o *BuildOptions) { o.TokenizerHash = "h2" },
		"no hash":   func(o *BuildOptions) { o.TokenizerHash = "" },
		"separator": func(o *BuildOptions) { o.Separator = -1 },
		"fraction":  func(o *BuildOptions) { o.ValFraction = 0.3 },
	} {
		o2 := o
		change(&o2)
		if _, ok := UpToDate(dir, c, o2); ok {
			t.Errorf("%s changed, still up to date", name)
		}
	}
	// A source file touched since.
	src := c.Files()[0]
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(src, later, later); err != nil {
		t.Fatal(err)
	}
	c2, err := Open([]string{src}, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := UpToDate(dir, c2, o); ok {
		t.Error("source modified, still up to date")
	}
	if _, ok := UpToDate(dir, c, o); !ok {
		t.Error("the corpus opened before the change no longer matches")
	}
	os.Remove(filepath.Join(dir, ValFile))
	if _, ok := UpToDate(dir, c, o); ok {
		t.Error("val.tokens removed, still up to date")
	}
}

// TestBuildStreams builds a generated corpus of 32 MiB and checks that the
// live heap (measured after a collection, every 4 MiB of progress) stays
// far below the corpus's size: Build must not hold the corpus or its
// tokens.
func TestBuildStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("32 MiB corpus")
	}
	tok := gpt2(t)
	path := filepath.Join(t.TempDir(), "big.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	line := []byte(`{"text": "`)
	for i := 0; i < 200; i++ {
		line = fmt.Appendf(line, "word%d the quick brown fox %d. ", i%37, i%11)
	}
	line = append(line, "\"}\n"...)
	const size = 32 << 20
	var docs int64
	for written := 0; written < size; written += len(line) {
		w.Write(line)
		docs++
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c, err := Open([]string{path}, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	next := int64(0)
	stats, err := Build(context.Background(), c, t.TempDir(), BuildOptions{
		Tokenizer: tok, Separator: 0, ValFraction: 0.01, Workers: 2,
		Progress: func(done, total int64) {
			if done >= next {
				next = done + 4<<20
				runtime.GC() // what is left is what Build holds
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Documents != docs || stats.Bytes < size/2 {
		t.Fatalf("stats %+v for %d documents", stats, docs)
	}
	if grown := int64(peak) - int64(base); grown > size/4 {
		t.Errorf("the heap grew by %d MiB while building a %d MiB corpus", grown>>20, size>>20)
	} else {
		t.Logf("heap grew by at most %.1f MiB for a %d MiB corpus of %d documents", float64(grown)/(1<<20), size>>20, docs)
	}
}

// TestDocumentStarts checks that documents begin after each separator but
// the last position's.
func TestDocumentStarts(t *testing.T) {
	got := DocumentStarts([][]int32{{5, 0, 3, 0, 4}, {1, 2, 3, 4, 0}, {0, 0, 1, 2, 3}}, 0)
	want := [][]int{{2, 4}, nil, {1, 2}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("starts %v, want %v", got, want)
	}
	if got := DocumentStarts([][]int32{{1, 2}, {3, 4}}, 0); got != nil {
		t.Fatalf("starts %v without a separator", got)
	}
	if got := DocumentStarts([][]int32{{0, 1}}, -1); got != nil {
		t.Fatalf("starts %v with no separator id", got)
	}
}
