package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/dlclark/regexp2"
)

// interestingRunes covers every class the split patterns distinguish:
// letters of several scripts and cases, numbers (Nd, Nl, No), white space
// of several kinds, line breaks, marks, symbols, the characters of the
// contractions and the ones that fold to them.
var interestingRunes = []rune(" \t\n\r\v\f\u0085\u00a0\u1680\u2003\u2028\u3000\u200b\u200d\ufeff" +
	"aAbsStTrReEvVmMlLdDxz'''\"!?.,;:-_()[]{}<>/\\@#$%^&*+=|~`" +
	"é中文ſKİßΣσПжאב٣²Ⅻ①0123456789\u0301\u0308\u0903😀👍🏽🇯🇵₹€")

// randomText returns a string of up to n runes drawn from interestingRunes
// (and, now and then, runs of one of them).
func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for k := r.IntN(n + 1); k > 0; k-- {
		c := interestingRunes[r.IntN(len(interestingRunes))]
		for rep := 1 + r.IntN(3)*r.IntN(3); rep > 0; rep-- {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// TestScannersMatchRegexp2 checks the hand-written scanners against a
// backtracking regular-expression engine running the patterns they stand
// for, on random text.
func TestScannersMatchRegexp2(t *testing.T) {
	// regexp2 has no possessive quantifiers: the reference for tiktoken's
	// spelling uses atomic groups instead.
	tiktokenRef := `'(?:[sSſdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|(?>[^\r\n\p{L}\p{N}]?)\p{L}+|\p{N}{1,3}|` +
		` ?(?>[^\s\p{L}\p{N}]+)[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`
	for _, tc := range []struct {
		expr, ref string
		sc        scanner
	}{
		{gpt2Pattern, gpt2Pattern, gpt2Scanner{}},
		{cl100kPattern, cl100kPattern, cl100kScanner{maxDigits: 3}},
		{cl100kTiktokenPattern, tiktokenRef, cl100kScanner{maxDigits: 3}},
		{singleDigitPattern, singleDigitPattern, cl100kScanner{maxDigits: 1}},
	} {
		p, err := compilePattern(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.(scanner); !ok {
			t.Fatalf("pattern %q has no scanner", tc.expr)
		}
		// Compile the same expression with regexp2, Oniguruma's case
		// folding of the contractions written out.
		re := regexp2.MustCompile(strings.ReplaceAll(tc.ref, contractionsIgnoreCase, contractionsFolded), regexp2.None)
		ref := &regexPattern{re: re}
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 3000; i++ {
			s := randomText(r, 30)
			want, err := ref.matches(s, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := tc.sc.matches(s, nil)
			if !slices.Equal(got, want) {
				t.Fatalf("pattern %q on %q:\n got %v\nwant %v", tc.expr, s, pieces(s, got), pieces(s, want))
			}
		}
	}
}

// pieces returns the text of each match.
func pieces(s string, ms []match) []string {
	var out []string
	for _, m := range ms {
		out = append(out, s[m.lo:m.hi])
	}
	return out
}

// TestScannerExamples checks splits that Hugging Face tokenizers 0.23.3
// produced (Split pre-tokenizer, Isolated).
func TestScannerExamples(t *testing.T) {
	cl, _ := compilePattern(cl100kPattern)
	gp, _ := compilePattern(gpt2Pattern)
	for _, tc := range []struct {
		p    pattern
		text string
		want []string
	}{
		{cl, "it'ſ IT'S x'Ss 'KK", []string{"it", "'ſ", " IT", "'S", " x", "'S", "s", " '", "KK"}},
		{cl, "a  b\n\n c 1234 x", []string{"a", " ", " b", "\n\n", " c", " ", "123", "4", " x"}},
		{cl, "(hello) \thi\r\n", []string{"(hello", ")", " ", "\thi", "\r\n"}},
		{gp, "Hello my friend, how is your day going?", []string{"Hello", " my", " friend", ",", " how", " is", " your", " day", " going", "?"}},
		{gp, "Hello there       dear", []string{"Hello", " there", "      ", " dear"}},
		{gp, "i⭢j  \n", []string{"i", "⭢", "j", "  \n"}},
		{gp, "don't 've '''s", []string{"don", "'t", " '", "ve", " '''", "s"}},
	} {
		ms, err := tc.p.matches(tc.text, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := pieces(tc.text, ms); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.text, got, tc.want)
		}
	}
}

// TestSplitBehaviors checks the five delimiter behaviours on Hugging
// Face's documented example.
func TestSplitBehaviors(t *testing.T) {
	text := "the-final--countdown"
	for _, tc := range []struct {
		b    splitBehavior
		want []string
	}{
		{splitRemoved, []string{"the", "final", "countdown"}},
		{splitIsolated, []string{"the", "-", "final", "-", "-", "countdown"}},
		{splitMergedWithPrevious, []string{"the-", "final-", "-", "countdown"}},
		{splitMergedWithNext, []string{"the", "-final", "-", "-countdown"}},
		{splitContiguous, []string{"the", "-", "final", "--", "countdown"}},
	} {
		for _, p := range []pattern{literalPattern("-"), runePattern(func(r rune) bool { return r == '-' })} {
			ms, _ := p.matches(text, nil)
			n := newNstr(text, true)
			var got []string
			err := n.splitEach(ms, tc.b, func(q nstr) error {
				got = append(got, q.s)
				if r := q.originalRange(0, len(q.s)); text[r.start:r.end] != q.s {
					t.Errorf("piece %q maps to %q", q.s, text[r.start:r.end])
				}
				return nil
			})
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("behavior %d: got %q, %v; want %q", tc.b, got, err, tc.want)
			}
		}
	}
}

// TestRegexFallback checks a pattern with lookahead that no scanner covers.
func TestRegexFallback(t *testing.T) {
	p, err := compilePattern(`\d+(?=px)|\s+`)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*regexPattern); !ok {
		t.Fatalf("got %T, want the regexp2 fallback", p)
	}
	ms, err := p.matches("a 12px 3em é", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []match{{0, 1, false}, {1, 2, true}, {2, 4, true}, {4, 6, false}, {6, 7, true}, {7, 10, false}, {10, 11, true}, {11, 13, false}}
	if !slices.Equal(ms, want) {
		t.Errorf("got %v, want %v", ms, want)
	}
	if _, err := compilePattern(`(unclosed`); err == nil {
		t.Error("invalid pattern compiled")
	}
}
