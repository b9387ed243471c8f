package tokenizer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// streamTokenizers returns every tokenizer of the fixtures: the files of
// testdata and the variants of parity.json.
func streamTokenizers(t *testing.T) (names []string, toks map[string]*Tokenizer, texts []string) {
	t.Helper()
	f := loadParity(t)
	toks = make(map[string]*Tokenizer)
	for name, cases := range f.Cases {
		toks[name] = loadFixture(t, name)
		if texts == nil {
			for _, c := range cases {
				texts = append(texts, c.Text)
			}
		}
	}
	for _, v := range f.Variants {
		toks["variant "+v.Name] = loadVariant(t, v)
	}
	for _, name := range []string{"gpt2", "cl100k", "o200k", "neox", "roberta"} {
		toks["aug "+name] = augmented(t, name)
	}
	for name := range toks {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, toks, texts
}

// augmented loads a byte-level fixture with merges added in front of its
// own: every pair of line break, tab, space, carriage return and slash.
// The fixtures, trained on Go source, have no token with a line break
// followed by anything, so that a wrong cut after a line break would
// rarely change their ids; with these merges it does.
func augmented(t *testing.T, name string) *Tokenizer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]json.RawMessage
	var model map[string]json.RawMessage
	var vocab map[string]int
	var merges []json.RawMessage
	var added []struct {
		ID int `json:"id"`
	}
	if json.Unmarshal(data, &file) != nil || json.Unmarshal(file["model"], &model) != nil ||
		json.Unmarshal(model["vocab"], &vocab) != nil || json.Unmarshal(model["merges"], &merges) != nil ||
		json.Unmarshal(file["added_tokens"], &added) != nil {
		t.Fatalf("%s: not a BPE tokenizer.json", name)
	}
	next := 0
	for _, id := range vocab {
		next = max(next, id+1)
	}
	for _, a := range added {
		next = max(next, a.ID+1)
	}
	var front []json.RawMessage
	chars := []string{"Ċ", "ĉ", "Ġ", "č", "/"}
	for _, a := range chars {
		for _, b := range chars {
			if _, ok := vocab[a+b]; !ok {
				vocab[a+b] = next
				next++
			}
			pair, _ := json.Marshal([2]string{a, b})
			front = append(front, pair)
		}
	}
	model["vocab"], _ = json.Marshal(vocab)
	model["merges"], _ = json.Marshal(append(front, merges...))
	file["model"], _ = json.Marshal(model)
	data, _ = json.Marshal(file)
	tok, err := FromJSON(data)
	if err != nil {
		t.Fatalf("augmented %s: %v", name, err)
	}
	return tok
}

// streamEdgeTexts are texts with the places where a careless cut changes
// the ids: characters next to line breaks and spaces that the pattern,
// the normalizer or an added token treat specially.
var streamEdgeTexts = []string{
	"a;\n/b", "x;\n//y\nz", "foo;\n/*x*/\n/", "foo\n<mask> bar", "foo <mask>", "x\n<mask>\n<mask>",
	"a[SEP] b", "a\n[SEP]b", "[SEP]\nx", "[SEP] x", "x\n\ty", "x \ny", "x\n y", "x\r\ny", "a\n\nb",
	"e\n\u0301x", "a\ne\u0301b", "a\n\u00a8b", "a\u00a8\nb", "a \u00a8b", "a\n\u200bb", "a\u200b\nb",
	"a\u200b b", "a \u200bb", "a\nİb", "New\nYork", "New York", "x\n'sa", "x'\ns", "x 's", "x's y",
	"World\nWorld", "a World b", "a\n\u3000b", "a\n\u00a0b", "a \u00a0b", "1\n23", "12 34", "1234\n5678",
	"a\nK", "<|endoftext|>\nx", "x\n<|endoftext|>", "x <|endoftext|> y", "x  y", "  x", "x\n",
	"\nx", " x", "x ", "a\n\n\nb c\n d \n e", "ﬁ\nﬁ ﬁ", "Ⅻ\n①", "a\n\u0345b", "a\n\u037ab",
	"if x {\n\treturn\n}\nfunc f() {}\n// c\n// d\n", "a /b\n/c", "\"s\"\n'q'",
}

// streamSeparators join fixture texts into longer ones.
var streamSeparators = []string{
	"\n", "\n\n", " \n", "x\ny", " ", "\t\n", "\n/", "/\n/", ";\n/", "\r\n", "a b", "\n<mask>",
	"[SEP] ", ".\n", "\u00a8\n\u00a8", "\n\u0301", "z\n\u200bz", "w\nWorld", "q\nNew York",
}

// streamTexts returns the fixture texts, the edge texts and random
// concatenations of them.
func streamTexts(texts []string) []string {
	out := append(slices.Clone(texts), streamEdgeTexts...)
	r := rand.New(rand.NewPCG(11, 12))
	for range 40 {
		var b strings.Builder
		for k := range 2 + r.IntN(7) {
			if k > 0 {
				b.WriteString(streamSeparators[r.IntN(len(streamSeparators))])
			}
			if r.IntN(4) == 0 {
				b.WriteString(streamEdgeTexts[r.IntN(len(streamEdgeTexts))])
			} else {
				b.WriteString(texts[r.IntN(len(texts))])
			}
		}
		out = append(out, b.String())
	}
	return out
}

// streamIDs runs encodeReader and returns the ids, joined, and the number
// of calls to emit.
func streamIDs(tok *Tokenizer, r io.Reader, addSpecial bool, chunk int) ([]int, int, error) {
	var got []int
	calls := 0
	err := tok.encodeReader(context.Background(), r, addSpecial, func(ids []int) error {
		if len(ids) == 0 {
			return errors.New("emit called without ids")
		}
		calls++
		got = append(got, ids...)
		return nil
	}, chunk)
	return got, calls, err
}

// TestEncodeReaderParity checks that EncodeReader gives EncodeFull's ids
// for every tokenizer of the fixtures, on the fixture texts, edge cases and
// random concatenations, with chunks of many sizes and several readers.
func TestEncodeReaderParity(t *testing.T) {
	names, toks, base := streamTokenizers(t)
	texts := streamTexts(base)
	var streaming, whole []string
	for _, name := range names {
		tok := toks[name]
		if tok.Streams() {
			streaming = append(streaming, name)
		} else {
			whole = append(whole, name)
		}
		t.Run(name, func(t *testing.T) {
			cuts := 0
			for _, text := range texts {
				for _, addSpecial := range []bool{false, true} {
					want, err := tok.EncodeFull(text, addSpecial)
					if err != nil {
						t.Fatal(err)
					}
					chunks := []int{1, 2, 3, 7, 64, defaultStreamChunk}
					if !tok.Streams() {
						// Only the reading differs.
						chunks = []int{1, 64, defaultStreamChunk}
					}
					for k, chunk := range chunks {
						var r io.Reader = strings.NewReader(text)
						switch k % 3 {
						case 1:
							r = iotest.OneByteReader(r)
						case 2:
							r = iotest.DataErrReader(r)
						}
						got, calls, err := streamIDs(tok, r, addSpecial, chunk)
						if err != nil {
							t.Fatalf("%q chunk %d: %v", text, chunk, err)
						}
						if !slices.Equal(got, want.IDs) {
							t.Fatalf("%q chunk %d special %v:\n got %v\nwant %v", text, chunk, addSpecial, got, want.IDs)
						}
						if chunk == 1 && calls > 1 {
							cuts++
						}
					}
				}
			}
			if tok.Streams() && cuts < len(texts)/4 {
				t.Errorf("only %d of %d texts were cut", cuts, len(texts))
			}
		})
	}
	t.Logf("streaming: %s", strings.Join(streaming, ", "))
	t.Logf("whole input: %s", strings.Join(whole, ", "))
	for _, name := range []string{"gpt2", "gpt2_pairs", "cl100k", "neox", "o200k", "roberta", "metaspace", "variant qwen_digits", "aug cl100k"} {
		if !toks[name].Streams() {
			t.Errorf("%s does not stream", name)
		}
	}
	for _, name := range []string{"gpt2_padded", "llama", "wordbpe"} {
		if toks[name].Streams() {
			t.Errorf("%s streams", name)
		}
	}
}

// TestStreamRulesMatter checks that the edge texts catch the cuts the
// rules forbid: with a rule dropped, some text encodes differently. It
// guards against a parity test that would pass whatever the rules.
func TestStreamRulesMatter(t *testing.T) {
	_, toks, base := streamTokenizers(t)
	texts := streamTexts(base)
	differs := func(tok *Tokenizer) bool {
		for _, text := range texts {
			want, err := tok.EncodeFull(text, false)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := streamIDs(tok, strings.NewReader(text), false, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want.IDs) {
				return true
			}
		}
		return false
	}
	rules := []struct {
		name, tok string
		drop      func(p *streamPlan)
	}{
		{"slash after a line break (o200k)", "aug o200k", func(p *streamPlan) { p.noSlash = false }},
		{"lstrip token after a line break", "gpt2", func(p *streamPlan) { p.lstripRaw = [256]bool{} }},
		{"rstrip token before a space", "o200k", func(p *streamPlan) { p.rstripRaw = [256]bool{} }},
		{"space cut in an added token", "variant nfd_whitespace", func(p *streamPlan) { p.sp = true }},
		{"line-break cut with a prefix space", "roberta", func(p *streamPlan) { p.nl = true }},
		{"line-break cut with Metaspace first", "metaspace", func(p *streamPlan) { p.nl = true }},
		{"cut with Prepend", "llama", func(p *streamPlan) { p.ok, p.sp = true, true }},
		{"cut in a contiguous split", "variant punct_digits", func(p *streamPlan) { p.ok, p.nl, p.sp = true, true, true }},
	}
	for _, rule := range rules {
		tok := *toks[rule.tok]
		if differs(&tok) {
			t.Fatalf("%s: %s already differs", rule.name, rule.tok)
		}
		rule.drop(&tok.stream)
		if !differs(&tok) {
			t.Errorf("%s: no text shows that the rule is needed", rule.name)
		}
	}
}

// TestNaiveCutsDiffer checks that cutting at every line break, without
// looking at the characters around it, changes the ids of the texts: the
// corpus exercises the white-space rule of the cuts.
func TestNaiveCutsDiffer(t *testing.T) {
	_, toks, base := streamTokenizers(t)
	for _, name := range []string{"gpt2", "aug cl100k", "aug o200k", "aug neox"} {
		tok := toks[name]
		found := false
		for _, text := range streamTexts(base) {
			want, err := tok.EncodeFull(text, false)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, piece := range strings.SplitAfter(text, "\n") {
				if got, err = tok.appendIDs(piece, got); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(got, want.IDs) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: cutting after every line break changes nothing", name)
		}
	}
}

// TestEncodeReaderErrors checks invalid UTF-8, cancellation, emit's errors,
// read errors and the cap on input that is read whole.
func TestEncodeReaderErrors(t *testing.T) {
	gpt2, llama := loadFixture(t, "gpt2"), loadFixture(t, "llama")
	noop := func([]int) error { return nil }
	for _, tok := range []*Tokenizer{gpt2, llama} {
		for _, text := range []string{"ok\nok\xff\nok", "ok\nok\n\xe4\xb8", "\xe4 x\ny"} {
			for _, chunk := range []int{1, 3, defaultStreamChunk} {
				err := tok.encodeReader(context.Background(), strings.NewReader(text), true, noop, chunk)
				if _, werr := tok.Encode(text); !errors.Is(err, api.ErrCorrupt) || !errors.Is(werr, api.ErrCorrupt) {
					t.Errorf("streams %v, %q chunk %d: %v (Encode: %v)", tok.Streams(), text, chunk, err, werr)
				}
			}
		}
		// Cancelled before the start, and while reading.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := tok.EncodeReader(ctx, strings.NewReader("a\nb"), true, noop); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v", err)
		}
		ctx, cancel = context.WithCancel(context.Background())
		r := &cancelReader{r: strings.NewReader(strings.Repeat("word word\nline\n", 1000)), cancel: cancel, after: 3}
		if err := tok.encodeReader(ctx, r, true, noop, 16); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled while reading: %v", err)
		}
		stop := errors.New("stop")
		err := tok.EncodeReader(context.Background(), strings.NewReader("a b\nc"), true, func([]int) error { return stop })
		if !errors.Is(err, stop) {
			t.Errorf("emit error: %v", err)
		}
		broken := errors.New("broken")
		err = tok.EncodeReader(context.Background(), iotest.ErrReader(broken), true, noop)
		if !errors.Is(err, broken) {
			t.Errorf("read error: %v", err)
		}
	}
	defer func(old int64) { maxWholeInput = old }(maxWholeInput)
	maxWholeInput = 100
	err := llama.encodeReader(context.Background(), strings.NewReader(strings.Repeat("x", 101)), true, noop, 7)
	if !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("input over the cap: %v", err)
	}
	if err := llama.encodeReader(context.Background(), strings.NewReader(strings.Repeat("x", 100)), true, noop, 7); err != nil {
		t.Errorf("input at the cap: %v", err)
	}
	// A tokenizer that streams has no cap on the input, only on the text
	// without a place to cut.
	if err := gpt2.encodeReader(context.Background(), strings.NewReader(strings.Repeat("x y\n", 100)), true, noop, 7); err != nil {
		t.Errorf("streaming input over the cap: %v", err)
	}
	err = gpt2.encodeReader(context.Background(), strings.NewReader("x y\n"+strings.Repeat("x", 200)+" y"), true, noop, 7)
	if !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("streaming input without a cut: %v", err)
	}
}

// cancelReader cancels its context after a number of reads.
type cancelReader struct {
	r      io.Reader
	cancel func()
	after  int
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.after--; c.after == 0 {
		c.cancel()
	}
	return c.r.Read(p)
}

// goLikeReader generates n bytes of text that looks like Go source: doc
// comments, functions, indented statements, from a small set of words.
type goLikeReader struct {
	n    int
	r    *rand.Rand
	line []byte
}

var goWords = strings.Fields("x y err ctx buf n i len append return if for range func var const type struct string int byte nil true false fmt.Errorf errors.Is make copy tokens ids text reader writer value index count size")

func (g *goLikeReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	written := 0
	for written < len(p) && g.n > 0 {
		if len(g.line) == 0 {
			g.line = g.nextBlock(g.line)
		}
		k := min(copy(p[written:], g.line), g.n)
		g.line = g.line[:copy(g.line, g.line[k:])]
		written += k
		g.n -= k
	}
	return written, nil
}

// nextBlock appends a documented function to b.
func (g *goLikeReader) nextBlock(b []byte) []byte {
	word := func() string { return goWords[g.r.IntN(len(goWords))] }
	name := fmt.Sprintf("%s%d", word(), g.r.IntN(100))
	b = fmt.Appendf(b, "// %s returns the %s of %s.\n// It is %s.\n", name, word(), word(), word())
	b = fmt.Appendf(b, "func %s(%s %s) (%s, error) {\n", name, word(), word(), word())
	for range 1 + g.r.IntN(8) {
		b = fmt.Appendf(b, "\t%s := %s(%s, %d)\n\tif %s != nil {\n\t\treturn %s\n\t}\n", word(), word(), word(), g.r.IntN(1000), word(), word())
	}
	return append(b, "}\n\n"...)
}

// TestEncodeReaderMemory encodes 50 MB of generated Go-like text (5 MB
// with -short) through an io.Reader and checks that the live heap stays
// under a bound that does not depend on the input's size.
func TestEncodeReaderMemory(t *testing.T) {
	size := 50 << 20
	if testing.Short() {
		size = 5 << 20
	}
	tok := loadFixture(t, "gpt2")
	if !tok.Streams() {
		t.Fatal("gpt2 does not stream")
	}
	// Warm the word cache, which belongs to the tokenizer and is bounded
	// on its own.
	if err := tok.EncodeReader(context.Background(), &goLikeReader{n: 1 << 20, r: rand.New(rand.NewPCG(1, 1))}, true, func([]int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	count := 0
	peak := heapPeak(func() {
		err := tok.EncodeReader(context.Background(), &goLikeReader{n: size, r: rand.New(rand.NewPCG(2, 2))}, true, func(ids []int) error {
			count += len(ids)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	const bound = 24 << 20
	t.Logf("%d MB in %d tokens, peak live heap %.1f MiB", size>>20, count, float64(peak)/(1<<20))
	if count < size/10 {
		t.Errorf("%d tokens for %d bytes", count, size)
	}
	if peak > bound {
		t.Errorf("peak live heap %d bytes, more than %d", peak, bound)
	}
}

// TestEncodeReaderLongPiece checks that a text without any place to cut
// (one long word) is still encoded exactly, the buffer growing to hold it.
func TestEncodeReaderLongPiece(t *testing.T) {
	tok := loadFixture(t, "cl100k")
	text := "start\n" + strings.Repeat("abc", 50000) + "\nend " + strings.Repeat("\n", 1000) + "x"
	want, err := tok.EncodeFull(text, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{5, 4096} {
		got, _, err := streamIDs(tok, strings.NewReader(text), true, chunk)
		if err != nil || !slices.Equal(got, want.IDs) {
			t.Errorf("chunk %d: %v; %d ids, want %d", chunk, err, len(got), len(want.IDs))
		}
	}
	// bytes.Reader too, which returns EOF with the last bytes on its next
	// call only.
	got, _, err := streamIDs(tok, bytes.NewReader([]byte(text)), true, 1000)
	if err != nil || !slices.Equal(got, want.IDs) {
		t.Errorf("bytes.Reader: %v", err)
	}
}

// streamPalette holds the characters and strings random texts are made of:
// the cut characters and what may surround them.
var streamPalette = []string{
	"\n", "\n", "\n", " ", " ", " ", "\t", "\r", "/", ";", "a", "Z", "k", "1", "'", "s", "re", ".", "{", "}",
	"\u00a8", "\u0301", "\u200b", "\ufeff", "\u00a0", "\u3000", "İ", "ﬁ", "é", "世", "😀", "\u037a", "Ⅻ",
	"<mask>", "[SEP]", "New York", "World", "<|endoftext|>", "<s>", "</s>", "  ", "\t\t",
}

// randomStreamText returns a random text of n pieces of the palette.
func randomStreamText(r *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(streamPalette[r.IntN(len(streamPalette))])
	}
	return b.String()
}

// TestEncodeReaderRandom compares EncodeReader with EncodeFull on random
// texts made of the characters around which cuts are delicate.
func TestEncodeReaderRandom(t *testing.T) {
	names, toks, _ := streamTokenizers(t)
	r := rand.New(rand.NewPCG(21, 22))
	n := 150
	if testing.Short() {
		n = 40
	}
	for _, name := range names {
		tok := toks[name]
		if !tok.Streams() {
			continue
		}
		for range n {
			text := randomStreamText(r, 1+r.IntN(120))
			addSpecial := r.IntN(2) == 0
			want, err := tok.EncodeFull(text, addSpecial)
			if err != nil {
				t.Fatal(err)
			}
			chunk := []int{1, 2, 5, 64}[r.IntN(4)]
			got, _, err := streamIDs(tok, strings.NewReader(text), addSpecial, chunk)
			if err != nil || !slices.Equal(got, want.IDs) {
				t.Fatalf("%s: %q chunk %d: %v\n got %v\nwant %v", name, text, chunk, err, got, want.IDs)
			}
		}
	}
}

// FuzzEncodeReader compares EncodeReader with EncodeFull on the tokenizers
// that stream.
func FuzzEncodeReader(f *testing.F) {
	for _, s := range streamEdgeTexts {
		f.Add(s, uint8(1))
	}
	f.Add("a\n\nb c\n/d", uint8(3))
	var toks []*Tokenizer
	for _, name := range []string{"gpt2", "cl100k", "o200k", "neox", "roberta", "metaspace"} {
		toks = append(toks, loadFixture(f, name))
	}
	f.Fuzz(func(t *testing.T, text string, chunk uint8) {
		if !utf8.ValidString(text) {
			return
		}
		for _, tok := range toks {
			want, err := tok.EncodeFull(text, true)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := streamIDs(tok, strings.NewReader(text), true, int(chunk%16)+1)
			if err != nil || !slices.Equal(got, want.IDs) {
				t.Fatalf("%q: %v\n got %v\nwant %v", text, err, got, want.IDs)
			}
		}
	})
}
