package tokenizer

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestEncodeRawIgnoresTruncationAndPadding loads gpt2.json with a
// truncation to 3 tokens and a fixed padding to 40 added: EncodeFull obeys
// them, EncodeRaw gives the whole text's ids and offsets, as the file
// without them encodes it.
func TestEncodeRawIgnoresTruncationAndPadding(t *testing.T) {
	raw, err := os.ReadFile("testdata/gpt2.json")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(raw), `"truncation":null,"padding":null`,
		`"truncation":{"max_length":3,"direction":"Right","strategy":"LongestFirst","stride":0},`+
			`"padding":{"strategy":{"Fixed":40},"direction":"Right","pad_to_multiple_of":null,"pad_id":0,"pad_type_id":0,"pad_token":"<|endoftext|>"}`, 1)
	if edited == string(raw) {
		t.Fatal("gpt2.json no longer has null truncation and padding")
	}
	tok, err := FromJSON([]byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	text := "func main() { return fmt.Println(\"hello\") }"
	want, err := plain.EncodeFull(text, false)
	if err != nil || len(want.IDs) <= 3 {
		t.Fatalf("%d ids, %v", len(want.IDs), err)
	}
	if cut, _ := tok.EncodeFull(text, false); len(cut.IDs) != 40 {
		t.Fatalf("EncodeFull with truncation and padding: %d ids, want 40 (3 and padding)", len(cut.IDs))
	}
	got, err := tok.EncodeRaw(text, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.IDs, want.IDs) {
		t.Fatalf("EncodeRaw: %v, want %v", got.IDs, want.IDs)
	}
	// The offsets are not trimmed by the post-processor: a byte-level
	// tokenizer's ranges tile the text, each token's space included.
	end := 0
	for i, o := range got.Offsets {
		if o[0] != end || o[1] <= o[0] {
			t.Fatalf("offset %d: %v after %d", i, o, end)
		}
		end = o[1]
	}
	if end != len(text) {
		t.Fatalf("offsets end at %d of %d bytes", end, len(text))
	}
	ids, err := tok.EncodeRaw(text, false)
	if err != nil || !slices.Equal(ids.IDs, want.IDs) {
		t.Fatalf("EncodeRaw without offsets: %v, %v", ids.IDs, err)
	}
}
