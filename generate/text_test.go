package generate

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/tokenizer"
)

func loadTok(t *testing.T, name string) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Load("../tokenizer/testdata/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// byteLevelRune is GPT-2's byte-to-character map: printable Latin-1 bytes
// stand for themselves, the others for U+0100 onwards in byte order.
func byteLevelRune(b byte) rune {
	printable := func(c int) bool {
		return ('!' <= c && c <= '~') || (0xA1 <= c && c <= 0xAC) || (0xAE <= c && c <= 0xFF)
	}
	if printable(int(b)) {
		return rune(b)
	}
	n := 0
	for c := 0; c < int(b); c++ {
		if !printable(c) {
			n++
		}
	}
	return rune(256 + n)
}

// byteIDs returns the ids of the byte-level tokens spelling s, one per
// byte.
func byteIDs(t *testing.T, tok *tokenizer.Tokenizer, s string) []int32 {
	t.Helper()
	var ids []int32
	for i := 0; i < len(s); i++ {
		id, ok := tok.TokenToID(string(byteLevelRune(s[i])))
		if !ok {
			t.Fatalf("no token for byte %#x", s[i])
		}
		ids = append(ids, int32(id))
	}
	return ids
}

// piece is an emitted piece and the number of tokens decoded when it came.
type piece struct {
	text   string
	tokens int
}

// streamScript generates after prompt on a model that decodes script, then
// EOS (the tokenizer's), and returns the result and the pieces emitted.
func streamScript(t *testing.T, tok *tokenizer.Tokenizer, prompt string, script []int32, o TextOptions) (*fakeModel, string, []piece) {
	t.Helper()
	ids, err := encodePrompt(tok, prompt)
	if err != nil {
		t.Fatal(err)
	}
	end := int32(max(tok.Special().EOS, 0))
	m := newFake(tok.VocabSize()+7, scriptLogits(len(ids), script, end))
	var pieces []piece
	got, err := Text(context.Background(), m, tok, prompt, o, func(p string) error {
		pieces = append(pieces, piece{p, m.steps + 1})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, p := range pieces {
		if p.text == "" || !utf8.ValidString(p.text) || strings.ContainsRune(p.text, utf8.RuneError) {
			t.Errorf("piece %q: want non-empty valid UTF-8 without U+FFFD", p.text)
		}
		all.WriteString(p.text)
	}
	if all.String() != got {
		t.Errorf("pieces %v do not add up to the result %q", pieces, got)
	}
	return m, got, pieces
}

func textOpts(maxTokens int, stop ...string) TextOptions {
	o := DefaultOptions()
	o.MaxTokens = maxTokens
	return TextOptions{Options: o, Stop: stop}
}

func checkPieces(t *testing.T, name string, got, want []piece) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: pieces %v, want %v", name, got, want)
	}
}

// TestStreamUTF8HoldBack checks that a character whose bytes come in
// several tokens is emitted whole, when its last byte comes, with a
// byte-level tokenizer (gpt2) and a byte-fallback one (llama).
func TestStreamUTF8HoldBack(t *testing.T) {
	gpt2 := loadTok(t, "gpt2")
	script := byteIDs(t, gpt2, "aöb😀c")
	_, got, pieces := streamScript(t, gpt2, "x", script, textOpts(20))
	if got != "aöb😀c" {
		t.Errorf("gpt2: %q, want %q", got, "aöb😀c")
	}
	checkPieces(t, "gpt2", pieces, []piece{{"a", 1}, {"ö", 3}, {"b", 4}, {"😀", 8}, {"c", 9}})

	llama := loadTok(t, "llama")
	var ids []int32
	for _, s := range []string{"<0xC3>", "<0xB6>", "▁x", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>", "▁x"} {
		id, ok := llama.TokenToID(s)
		if !ok {
			t.Fatalf("llama has no token %q", s)
		}
		ids = append(ids, int32(id))
	}
	_, got, pieces = streamScript(t, llama, "x", ids, textOpts(20))
	if got != "ö x😀 x" {
		t.Errorf("llama: %q, want %q", got, "ö x😀 x")
	}
	checkPieces(t, "llama", pieces, []piece{{"ö", 2}, {" x", 3}, {"😀", 7}, {" x", 8}})
}

// TestStreamStop checks that the output is cut before the first stop
// string, that text that may start one is held back until it cannot, and
// that a stop string ends decoding.
func TestStreamStop(t *testing.T) {
	tok := loadTok(t, "gpt2")
	cases := []struct {
		name, text string
		maxTokens  int
		stop       []string
		want       string
		pieces     []piece
		steps      int // Step calls: tokens decoded - 1
	}{
		{"stop", "ab STOP cd", 20, []string{"STOP"}, "ab ",
			[]piece{{"a", 1}, {"b", 2}, {" ", 3}}, 6},
		{"false alarm", "ab STAR", 20, []string{"STOP"}, "ab STAR",
			[]piece{{"a", 1}, {"b", 2}, {" ", 3}, {"STA", 6}, {"R", 7}}, 7},
		{"held at max tokens", "ab STAR", 5, []string{"STOP"}, "ab ST",
			[]piece{{"a", 1}, {"b", 2}, {" ", 3}, {"ST", 5}}, 4},
		{"held at EOS", "ab ST", 20, []string{"STOP"}, "ab ST",
			[]piece{{"a", 1}, {"b", 2}, {" ", 3}, {"ST", 6}}, 5},
		{"the earliest of two", "ab cd", 20, []string{"cd", "b c"}, "a",
			[]piece{{"a", 1}}, 3},
		{"a multibyte stop string", "aöb", 20, []string{"ö"}, "a",
			[]piece{{"a", 1}}, 2},
		{"stop first", "STOP", 20, []string{"ST"}, "", nil, 1},
	}
	for _, c := range cases {
		m, got, pieces := streamScript(t, tok, "x", byteIDs(t, tok, c.text), textOpts(c.maxTokens, c.stop...))
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
		checkPieces(t, c.name, pieces, c.pieces)
		if m.steps != c.steps {
			t.Errorf("%s: %d steps, want %d", c.name, m.steps, c.steps)
		}
	}
}

// TestStreamBatch checks two prompts at once: the first ends at a stop
// string, the second goes on to its EOS, and the pieces go to the right
// sequence.
func TestStreamBatch(t *testing.T) {
	tok := loadTok(t, "gpt2")
	scripts := map[int32][]int32{88: byteIDs(t, tok, "one. two"), 89: byteIDs(t, tok, "three. four")}
	m := newFake(tok.VocabSize(), func(hist []int32, row []float32) {
		scriptLogits(1, scripts[hist[0]], 0)(hist, row)
	})
	o := textOpts(30, " t")
	var seq0, seq1 strings.Builder
	got, err := Stream(context.Background(), m, tok, []string{"x", "y"}, o, func(seq int, p string) error {
		[]*strings.Builder{&seq0, &seq1}[seq].WriteString(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"one.", "three. four"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if seq0.String() != got[0] || seq1.String() != got[1] {
		t.Errorf("pieces per sequence %q, %q; results %q", seq0.String(), seq1.String(), got)
	}
}

// TestStreamPrompts checks the prompt ids: an empty prompt starts from EOS,
// padding is left out, and a tokenizer without EOS refuses an empty prompt.
func TestStreamPrompts(t *testing.T) {
	gpt2 := loadTok(t, "gpt2")
	m, _, _ := streamScript(t, gpt2, "", byteIDs(t, gpt2, "hi"), textOpts(5))
	if !slices.EqualFunc(m.first, [][]int32{{0}}, slices.Equal) {
		t.Errorf("empty prompt: the model got %v, want [[0]] (EOS)", m.first)
	}
	padded := loadTok(t, "gpt2_padded")
	m, got, _ := streamScript(t, padded, "x", byteIDs(t, padded, "hi"), textOpts(5))
	if !slices.EqualFunc(m.first, [][]int32{{88}}, slices.Equal) || got != "hi" {
		t.Errorf("padding tokenizer: the model got %v, want [[88]]; text %q", m.first, got)
	}

	raw, err := os.ReadFile("../tokenizer/testdata/gpt2.json")
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	delete(file, "added_tokens")
	if raw, err = json.Marshal(file); err != nil {
		t.Fatal(err)
	}
	noEOS, err := tokenizer.FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	if noEOS.Special().EOS >= 0 {
		t.Fatalf("the tokenizer without added tokens still has EOS %d", noEOS.Special().EOS)
	}
	_, err = Text(context.Background(), newFake(1001, hashLogits), noEOS, "", textOpts(5), nil)
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("empty prompt without EOS: %v, want not found", err)
	}
}

// TestStreamMatchesDecode samples freely from a tiny Mamba (much of it
// broken UTF-8 and ids the tokenizer does not know) and checks that the
// text equals the tokenizer's decoding of the ids Generate gives.
func TestStreamMatchesDecode(t *testing.T) {
	tok := loadTok(t, "gpt2")
	m := tinyMamba(t, 7)
	o := textOpts(60)
	o.Temperature, o.Seed = 1.5, 21
	prompts := []string{"Hello wörld", "func main() {"}
	var pieces [2]strings.Builder
	got, err := Stream(context.Background(), m, tok, prompts, o, func(seq int, p string) error {
		pieces[seq].WriteString(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([][]int32, len(prompts))
	for i, p := range prompts {
		if ids[i], err = encodePrompt(tok, p); err != nil {
			t.Fatal(err)
		}
	}
	o.EOS = []int32{int32(tok.Special().EOS)}
	out := gen(t, m, ids, o.Options)
	for i := range prompts {
		var known []int
		for _, id := range out[i] {
			if _, ok := tok.IDToToken(int(id)); ok {
				known = append(known, int(id))
			}
		}
		want, err := tok.Decode(known)
		if err != nil {
			t.Fatal(err)
		}
		if got[i] != want || pieces[i].String() != want {
			t.Errorf("sequence %d: streamed %q (pieces %q), decoded %q", i, got[i], pieces[i].String(), want)
		}
	}
}

// TestStreamErrors checks that an error from emit stops decoding and comes
// back wrapped with the text emitted so far, and that cancelling the
// context stops the stream.
func TestStreamErrors(t *testing.T) {
	tok := loadTok(t, "gpt2")
	m := newFake(tok.VocabSize(), scriptLogits(1, byteIDs(t, tok, "abcdef"), 0))
	stop := errors.New("enough")
	got, err := Text(context.Background(), m, tok, "x", textOpts(20), func(p string) error {
		if p == "c" {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || got != "abc" || m.steps != 2 {
		t.Errorf("emit error at c: %q, %v after %d steps", got, err, m.steps)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got, err = Text(ctx, m, tok, "x", textOpts(20), func(p string) error {
		if p == "b" {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || got != "ab" {
		t.Errorf("cancelled at b: %q, %v", got, err)
	}
	if _, err := Text(context.Background(), m, nil, "x", textOpts(20), nil); !errors.Is(err, api.ErrConfig) {
		t.Errorf("no tokenizer: %v", err)
	}
	if _, err := Text(context.Background(), m, tok, "x", textOpts(20, ""), nil); !errors.Is(err, api.ErrConfig) {
		t.Errorf("empty stop string: %v", err)
	}
}
