package eval

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/tokenizer"
)

// tinyTokJSON is a tokenizer of one token per character: <eos> (0, an
// added special token), " " (1), a (2), b (3), c (4), x (5).
const tinyTokJSON = `{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[{"id":0,"content":"<eos>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,
"vocab":{"<eos>":0," ":1,"a":2,"b":3,"c":4,"x":5},"merges":[]}}`

const (
	tEOS, tSpace, tA, tB, tC, tX = 0, 1, 2, 3, 4, 5
	tinyVocab                    = 6
)

// bigramRow returns the logits of a bigram model whose next-token
// probabilities are: after x, " " 1/2 and 1/10 each other; after " ", a
// 1/4, b 1/8, 5/32 each other; after b, c 1/2 and 1/10 each other;
// uniform after the rest. The logits are the log-probabilities, so the
// log-softmax gives them back.
func bigramRow(_ int, id int32) []float32 {
	p := make([]float64, tinyVocab)
	fill := func(v float64) {
		for i := range p {
			p[i] = v
		}
	}
	switch id {
	case tX:
		fill(1.0 / 10)
		p[tSpace] = 1.0 / 2
	case tSpace:
		fill(5.0 / 32)
		p[tA], p[tB] = 1.0/4, 1.0/8
	case tB:
		fill(1.0 / 10)
		p[tC] = 1.0 / 2
	default:
		fill(1.0 / tinyVocab)
	}
	row := make([]float32, tinyVocab)
	for i, v := range p {
		row[i] = float32(math.Log(v))
	}
	return row
}

func tinyTokenizer(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.FromJSON([]byte(tinyTokJSON))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func str(s string) *string { return &s }

// TestScoreMCByHand scores four examples whose log-likelihoods are worked
// out by hand from bigramRow (to 1e-6: the logits are float32 logs):
//
//	0: "x" + " a" = ln 1/2 + ln 1/4 = ln 1/8, per character ln 1/8;
//	   "x" + " bc" = ln 1/2 + ln 1/8 + ln 1/2 = ln 1/32, per character
//	   ln(1/32)/2 > ln 1/8: acc picks "a", acc_norm "bc" (the label);
//	1: "" (EOS) + " a" = ln 1/6 + ln 1/4 beats " b" = ln 1/6 + ln 1/8;
//	2: "x " with delimiter "": the space moves to the continuation, so
//	   " c" = ln 1/2 + ln 5/32 and " a" = ln 1/8 (the label) wins both;
//	3: example 0 with the choices swapped: acc right, acc_norm wrong.
//
// acc and acc_norm are 3/4, each with standard error
// sqrt((3·(1/4)² + (3/4)²)/3)/√4 = 1/4.
func TestScoreMCByHand(t *testing.T) {
	ctx := context.Background()
	m := newFake(tinyVocab, bigramRow)
	ex := []MCExample{
		{Context: "x", Choices: []string{"a", "bc"}, Label: 1},
		{Context: "", Choices: []string{"a", "b"}, Label: 0},
		{Context: "x ", Choices: []string{"c", "a"}, Label: 1, Delimiter: str("")},
		{Context: "x", Choices: []string{"bc", "a"}, Label: 1},
	}
	var done []int
	res, err := ScoreMC(ctx, m, tinyTokenizer(t), ex, MCOptions{}, func(d, total int) {
		if total != len(ex) {
			t.Errorf("progress total %d, want %d", total, len(ex))
		}
		done = append(done, d)
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := math.Log
	want := []MCScore{
		{LogLik: []float64{ln(1.0 / 8), ln(1.0 / 32)}, Greedy: []bool{true, false}, Tokens: []int{2, 3}, Pred: 0, PredNorm: 1, Label: 1},
		{LogLik: []float64{ln(1.0/6) + ln(1.0/4), ln(1.0/6) + ln(1.0/8)}, Greedy: []bool{false, false}, Tokens: []int{2, 2}, Pred: 0, PredNorm: 0, Label: 0},
		{LogLik: []float64{ln(5.0 / 64), ln(1.0 / 8)}, Greedy: []bool{false, true}, Tokens: []int{2, 2}, Pred: 1, PredNorm: 1, Label: 1},
		{LogLik: []float64{ln(1.0 / 32), ln(1.0 / 8)}, Greedy: []bool{false, true}, Tokens: []int{3, 2}, Pred: 1, PredNorm: 0, Label: 1},
	}
	for i, w := range want {
		g := res.Details[i]
		for j := range w.LogLik {
			if math.Abs(g.LogLik[j]-w.LogLik[j]) > 1e-6 {
				t.Errorf("example %d choice %d: loglik %.9g, want %.9g", i, j, g.LogLik[j], w.LogLik[j])
			}
		}
		if !slices.Equal(g.Greedy, w.Greedy) || !slices.Equal(g.Tokens, w.Tokens) || g.Pred != w.Pred || g.PredNorm != w.PredNorm || g.Label != w.Label {
			t.Errorf("example %d: %+v, want %+v", i, g, w)
		}
	}
	if res.Examples != 4 || res.Acc != 0.75 || res.AccNorm != 0.75 ||
		math.Abs(res.AccStderr-0.25) > 1e-15 || math.Abs(res.AccNormStderr-0.25) > 1e-15 {
		t.Errorf("result %+v, want 4 examples, acc and acc_norm 0.75, standard errors 0.25", res)
	}
	if !slices.Equal(done, []int{1, 2, 3, 4}) {
		t.Errorf("progress %v", done)
	}
	// The model saw the context and the continuation but its last token.
	for i, w := range [][]int32{{tX, tSpace}, {tX, tSpace, tB}, {tEOS, tSpace}, {tEOS, tSpace}, {tX, tSpace}, {tX, tSpace}} {
		if c := m.calls[i]; c.method != "forward" || !slices.Equal(c.ids, w) {
			t.Errorf("call %d: %s %v, want forward %v", i, c.method, c.ids, w)
		}
	}

	// The delimiter of the options, for examples without their own: "a"
	// right after "x" is ln 1/10.
	res, err = ScoreMC(ctx, m, tinyTokenizer(t), ex[:1], MCOptions{Delimiter: str("")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g := res.Details[0].LogLik[0]; math.Abs(g-ln(0.1)) > 1e-6 {
		t.Errorf("delimiter \"\": loglik %.9g, want ln 1/10 = %.9g", g, ln(0.1))
	}
	if !math.IsNaN(res.AccStderr) {
		t.Errorf("one example: standard error %v, want NaN", res.AccStderr)
	}
}

// TestScoreMCErrors checks the refusals of ScoreMC and LogLikelihood.
func TestScoreMCErrors(t *testing.T) {
	ctx := context.Background()
	m := newFake(tinyVocab, bigramRow)
	tok := tinyTokenizer(t)
	cases := map[string]struct {
		ex   []MCExample
		want error
	}{
		"no examples":        {nil, api.ErrConfig},
		"label out of range": {[]MCExample{{Context: "x", Choices: []string{"a", "b"}, Label: 2}}, api.ErrOutOfRange},
		"one choice":         {[]MCExample{{Context: "x", Choices: []string{"a"}}}, api.ErrCorrupt},
		"empty choice":       {[]MCExample{{Context: "x", Choices: []string{"a", ""}}}, api.ErrCorrupt},
	}
	for name, c := range cases {
		if _, err := ScoreMC(ctx, m, tok, c.ex, MCOptions{}, nil); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ScoreMC(cctx, m, tok, []MCExample{{Context: "x", Choices: []string{"a", "b"}}}, MCOptions{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	for name, pair := range map[string][2][]int32{
		"empty context":      {nil, {1}},
		"empty continuation": {{1}, nil},
		"id out of range":    {{1}, {tinyVocab}},
	} {
		if _, _, err := LogLikelihood(ctx, m, pair[0], pair[1]); !errors.Is(err, api.ErrOutOfRange) {
			t.Errorf("%s: %v, want ErrOutOfRange", name, err)
		}
	}
}

// TestEncodePairGPT2 checks the encoding of context and continuation on a
// GPT-2 style byte-level tokenizer: the context's trailing white space
// moves to the continuation (without the move, "world " would end in a
// token of its own); an empty context is the EOS token; the ids of the
// pair are those of the whole text.
func TestEncodePairGPT2(t *testing.T) {
	tok, err := tokenizer.Load("../tokenizer/testdata/gpt2.json")
	if err != nil {
		t.Fatal(err)
	}
	enc := func(s string) []int32 {
		ids, err := encodePlain(tok, s)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	cases := []struct{ context, continuation, wantCtx, wantCont string }{
		{"Hello world ", "again", "Hello world", " again"},
		{"Hello world", " again", "Hello world", " again"},
		{"x := 1\n", "}", "x := 1", "\n}"},
		{"if err != nil {\n\treturn", " err", "if err != nil {\n\treturn", " err"},
		{"", " again", "", " again"},
		{" \n", "again", "", " \nagain"},
	}
	for _, c := range cases {
		ctxIDs, cont, err := EncodePair(tok, c.context, c.continuation)
		if err != nil {
			t.Fatalf("%q + %q: %v", c.context, c.continuation, err)
		}
		wantCtx := []int32{int32(tok.Special().EOS)}
		if c.wantCtx != "" {
			wantCtx = enc(c.wantCtx)
		}
		wantCont := enc(c.wantCtx + c.wantCont)[len(enc(c.wantCtx)):]
		if !slices.Equal(ctxIDs, wantCtx) || !slices.Equal(cont, wantCont) {
			t.Errorf("%q + %q: %v + %v, want %v + %v", c.context, c.continuation, ctxIDs, cont, wantCtx, wantCont)
		}
		// On this tokenizer the continuation's ids are also its own
		// encoding.
		if !slices.Equal(cont, enc(c.wantCont)) {
			t.Errorf("%q + %q: continuation %v, want encode(%q) = %v", c.context, c.continuation, cont, c.wantCont, enc(c.wantCont))
		}
	}
	if naive := enc("Hello world "); len(naive) != len(enc("Hello world"))+1 {
		t.Errorf("encode(\"Hello world \") = %v: the case does not show the move", naive)
	}
	if tok.Special().EOS != 0 {
		t.Errorf("EOS %d, want 0 (<|endoftext|>)", tok.Special().EOS)
	}

	// ScoreMC runs the model over exactly these ids.
	m := newFake(tok.VocabSize(), func(int, int32) []float32 { return make([]float32, tok.VocabSize()) })
	ex := []MCExample{{Context: "Hello world ", Choices: []string{"again", "there"}, Label: 0, Delimiter: str("")}}
	res, err := ScoreMC(context.Background(), m, tok, ex, MCOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for j, choice := range ex[0].Choices {
		ctxIDs, cont, _ := EncodePair(tok, "Hello world ", choice)
		want := append(slices.Clone(ctxIDs), cont[:len(cont)-1]...)
		if !slices.Equal(m.calls[j].ids, want) {
			t.Errorf("choice %q: the model saw %v, want %v", choice, m.calls[j].ids, want)
		}
		// Uniform logits: every token has log-probability -ln V.
		if w := -float64(len(cont)) * math.Log(float64(tok.VocabSize())); math.Abs(res.Details[0].LogLik[j]-w) > 1e-9 {
			t.Errorf("choice %q: loglik %.12g, want %.12g", choice, res.Details[0].LogLik[j], w)
		}
	}
}

// TestEncodePairNoEOS checks that an empty context needs an EOS or BOS
// token.
func TestEncodePairNoEOS(t *testing.T) {
	tok, err := tokenizer.FromJSON([]byte(strings.Replace(tinyTokJSON, `"special":true`, `"special":false`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := EncodePair(tok, "", "a"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("no EOS: %v, want ErrNotFound", err)
	}
	if _, cont, err := EncodePair(tok, "x", " a"); err != nil || !slices.Equal(cont, []int32{tSpace, tA}) {
		t.Fatalf("with a context: %v, %v", cont, err)
	}
}
