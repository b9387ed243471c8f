package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

// TestDecoders checks each decoder on outputs recorded from Hugging Face
// tokenizers 0.23.3.
func TestDecoders(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    decoder
		in   []string
		want string
	}{
		{"metaspace always", metaspaceDecoder{'▁', true}, []string{"▁▁a", "▁b▁c"}, "a b c"},
		{"metaspace never", metaspaceDecoder{'▁', false}, []string{"▁▁a", "▁b▁c"}, "  a b c"},
		{"byte fallback", byteFallbackDecoder{}, []string{"<0xE4>", "<0xBD>", "a", "<0xE4>", "<0xBD>", "<0xA0>", "<0x41>", "<0xff>", "<0xFF>"}, "��a������"},
		{"byte fallback valid", byteFallbackDecoder{}, []string{"<0xE4>", "<0xBD>", "<0xA0>", "!"}, "你!"},
		{"byte fallback plus", byteFallbackDecoder{}, []string{"<0x+F>", "<0x4a>", "<0xG1>"}, "\x0fJ<0xG1>"},
		{"strip", stripDecoder{' ', 1, 1}, []string{"  a  ", "b "}, " a b"},
		{"strip all", stripDecoder{' ', 1, 1}, []string{"  ", "a"}, "a"},
		{"strip two", stripDecoder{' ', 2, 0}, []string{"  x ", "x"}, "x x"},
		{"bpe suffix", bpeDecoder{"</w>"}, []string{"a</w>", "b</w>c", "d</w>"}, "a b cd"},
		{"replace", &replaceDecoder{literalPattern("▁"), " "}, []string{"▁a▁", "b"}, " a b"},
		{"byte level", byteLevelDecoder{}, []string{"Ġa", "\u00ff", "x\u0100"}, " a�x\x00"},
		{"llama chain", sequenceDecoder{&replaceDecoder{literalPattern("▁"), " "}, byteFallbackDecoder{}, fuseDecoder{}, stripDecoder{' ', 1, 0}},
			[]string{"▁Hi", "▁<0x41>"}, "Hi <0x41>"},
	} {
		out, err := tc.d.decodeChain(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := strings.Join(out, ""); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestLossyUTF8 checks the replacement of invalid sequences against
// Python's bytes.decode("utf-8", "replace"), which follows the same
// maximal-subpart rule as Rust's String::from_utf8_lossy.
func TestLossyUTF8(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"\xe4\xbd", "�"},
		{"\xe4\xbda", "�a"},
		{"\xff\xfe", "��"},
		{"\xf0\x9f\x98", "�"},
		{"\xed\xa0\x80", "���"},
		{"\xe0\x80\xaf", "���"},
		{"\xf4\x90\x80\x80", "����"},
		{"a\xc3", "a�"},
		{"\xc0\xaf", "��"},
		{"\xf0\x9f\x98\x80\x80", "😀�"},
		{"ok", "ok"},
	} {
		if got := lossyUTF8([]byte(tc.in)); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestByteLevelTables checks that the byte-level alphabet is a bijection
// of printable characters.
func TestByteLevelTables(t *testing.T) {
	seen := map[rune]bool{}
	for b := 0; b < 256; b++ {
		r := byteChars[b]
		if seen[r] || charBytes[r] != byte(b) || r == ' ' {
			t.Fatalf("byte %d maps to %q", b, r)
		}
		seen[r] = true
	}
	if byteChars[' '] != 'Ġ' || byteChars['\n'] != 'Ċ' || byteChars['a'] != 'a' {
		t.Error("GPT-2 characters differ")
	}
	if got := byteLevelString("a é"); got != "aĠÃ©" {
		t.Errorf("byteLevelString = %q", got)
	}
	if !slices.Equal([]rune(byteLevelString("\x00")), []rune{0x100}) {
		t.Error("byte 0 does not map to U+0100")
	}
}
