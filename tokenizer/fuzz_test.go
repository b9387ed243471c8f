package tokenizer

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// roundTripFixtures are the byte-level fixtures without a normalizer, for
// which decoding the ids of any text gives the text back.
var roundTripFixtures = []string{"gpt2", "cl100k"}

// checkRoundTrip encodes s without template tokens and decodes the ids
// keeping special tokens; the result must be s. gpt2's <mask> strips the
// space on its left, so texts containing it are skipped there. For texts
// without special tokens, Decode(Encode(s)) (template tokens added, then
// skipped) must give s too.
func checkRoundTrip(t *testing.T, toks map[string]*Tokenizer, s string) {
	for name, tok := range toks {
		if name == "gpt2" && strings.Contains(s, "<mask>") {
			continue
		}
		e, err := tok.EncodeFull(s, false)
		if err != nil {
			t.Fatalf("%s: encode %q: %v", name, s, err)
		}
		got, err := tok.DecodeWith(e.IDs, false)
		if err != nil {
			t.Fatalf("%s: decode %q: %v", name, s, err)
		}
		if got != s {
			t.Fatalf("%s: decode(encode(%q)) = %q", name, s, got)
		}
		ids, err := tok.Encode(s)
		if err != nil {
			t.Fatalf("%s: encode %q: %v", name, s, err)
		}
		if strings.Contains(s, "<|") {
			continue
		}
		if got, err := tok.Decode(ids); err != nil || got != s {
			t.Fatalf("%s: Decode(Encode(%q)) = %q, %v", name, s, got, err)
		}
	}
}

// roundTripTokenizers loads the round-trip fixtures.
func roundTripTokenizers(t testing.TB) map[string]*Tokenizer {
	toks := make(map[string]*Tokenizer)
	for _, name := range roundTripFixtures {
		toks[name] = loadFixture(t, name)
	}
	return toks
}

// randomUnicode returns a string of up to n runes drawn from all of
// Unicode (surrogates excluded), mixed with the interesting runes.
func randomUnicode(r *rand.Rand, n int) string {
	var b strings.Builder
	for k := r.IntN(n + 1); k > 0; k-- {
		switch r.IntN(4) {
		case 0:
			b.WriteRune(interestingRunes[r.IntN(len(interestingRunes))])
		case 1:
			b.WriteRune(rune(r.IntN(0x3000)))
		default:
			c := rune(r.IntN(utf8.MaxRune + 1))
			if utf8.ValidRune(c) {
				b.WriteRune(c)
			}
		}
	}
	return b.String()
}

// TestRoundTripRandom is the deterministic version of FuzzRoundTrip.
func TestRoundTripRandom(t *testing.T) {
	toks := roundTripTokenizers(t)
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 2000; i++ {
		checkRoundTrip(t, toks, randomUnicode(r, 40))
	}
}

// FuzzRoundTrip checks decode(encode(s)) == s on arbitrary text:
//
//	go test ./tokenizer -run '^$' -fuzz FuzzRoundTrip -fuzztime 60s
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", " ", "Hello world  ", "it's 'S\t\n\n x", "你好 😀👍🏽 e\u0301\u00a0\u3000", "<|begin_of_text|>World"} {
		f.Add(s)
	}
	toks := roundTripTokenizers(f)
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			if _, err := toks["gpt2"].Encode(s); !errors.Is(err, api.ErrCorrupt) {
				t.Fatalf("invalid UTF-8 %q: %v", s, err)
			}
			return
		}
		checkRoundTrip(t, toks, s)
	})
}

// FuzzLoad feeds arbitrary files to the loader; it must return a tokenizer
// or an error wrapping ErrCorrupt or ErrUnsupported, never panic, and a
// loaded tokenizer must encode and decode without internal errors:
//
//	go test ./tokenizer -run '^$' -fuzz FuzzLoad -fuzztime 5m
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"gpt2", "llama", "metaspace", "wordbpe"} {
		data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(mini("null", miniModel, `["a b", "Ġ ab"]`)))
	f.Add([]byte(mini(`{"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]}`, miniModel, `[["a", "b"]]`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := FromJSON(data)
		if err != nil {
			if !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrUnsupported) {
				t.Fatalf("error wraps neither ErrCorrupt nor ErrUnsupported: %v", err)
			}
			return
		}
		for _, text := range []string{"", "Hello, world! 123  \n\tab", "ab <eos> 你好 😀 e\u0301"} {
			ids, err := tok.Encode(text)
			if errors.Is(err, api.ErrInternal) {
				t.Fatalf("encode %q: %v", text, err)
			}
			if _, err := tok.EncodeFull(text, true); errors.Is(err, api.ErrInternal) {
				t.Fatalf("encode full %q: %v", text, err)
			}
			if _, err := tok.Decode(ids); errors.Is(err, api.ErrInternal) {
				t.Fatalf("decode %v: %v", ids, err)
			}
		}
	})
}
