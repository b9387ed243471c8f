package eval

import (
	"testing"

	"github.com/densessm/densessm/defaultmodel"
)

// TestEncodeAllBoundaryMerge uses the default model's tokenizer, which
// has "}()" as one token: after a context ending in "}", the choice "()"
// merges with it. Every choice must then be scored after the same context
// ids, and the ids must still spell the whole text.
func TestEncodeAllBoundaryMerge(t *testing.T) {
	tok, err := defaultmodel.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	context := "go func() {\n\tdone()\n}"
	pe, err := newPairEncoder(tok, context)
	if err != nil {
		t.Fatal(err)
	}
	choices := []string{"[]", "()", "{}", ";"}
	ctxIDs, conts, err := pe.encodeAll(choices)
	if err != nil {
		t.Fatal(err)
	}
	if len(ctxIDs) >= len(pe.ctxIDs) {
		t.Fatalf("context ids %v not cut back from %v: does the tokenizer still merge \"}()\"?", ctxIDs, pe.ctxIDs)
	}
	decode := func(ids []int32) string {
		xs := make([]int, len(ids))
		for i, id := range ids {
			xs[i] = int(id)
		}
		s, err := tok.Decode(xs)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for i, c := range choices {
		if got := decode(ctxIDs) + decode(conts[i]); got != context+c {
			t.Errorf("choice %q: ids spell %q", c, got)
		}
		whole, _ := encodePlain(tok, context+c)
		if len(ctxIDs)+len(conts[i]) != len(whole) {
			t.Errorf("choice %q: %d+%d ids, the whole text has %d", c, len(ctxIDs), len(conts[i]), len(whole))
		}
	}
	// Without a merge the split is lm-evaluation-harness's.
	ctx2, conts2, err := pe.encodeAll([]string{";"})
	if err != nil || len(ctx2) != len(pe.ctxIDs) || len(conts2[0]) == 0 {
		t.Fatalf("no merge: context %v (want %v), continuation %v, %v", ctx2, pe.ctxIDs, conts2, err)
	}
}
