package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestTokenizeRoundTrip(t *testing.T) {
	const tok = "../../tokenizer/testdata/gpt2.json"
	text := "Hello, wörld! 你好 🙂\n\tfunc main() {}\n"
	out, errOut, st := runCLIInput(t, text, "tokenize", "--tokenizer", tok)
	if st != 0 {
		t.Fatalf("tokenize: status %d: %s", st, errOut)
	}
	var ids []int
	if err := json.Unmarshal([]byte(out), &ids); err != nil || len(ids) == 0 {
		t.Fatalf("tokenize printed %q: %v", out, err)
	}
	count, _, st := runCLIInput(t, text, "tokenize", "--tokenizer", tok, "--count")
	if n, err := strconv.Atoi(strings.TrimSpace(count)); st != 0 || err != nil || n != len(ids) {
		t.Errorf("--count printed %q, want %d", count, len(ids))
	}
	back, errOut, st := runCLIInput(t, out, "tokenize", "--tokenizer", tok, "--decode")
	if st != 0 || back != text {
		t.Errorf("--decode gave %q (status %d, %s), want %q", back, st, errOut, text)
	}
	if _, errOut, st := runCLIInput(t, "[1,", "tokenize", "--tokenizer", tok, "--decode"); st != 1 || !strings.Contains(errOut, "JSON array") {
		t.Errorf("bad --decode input: status %d, %q", st, errOut)
	}
	if _, errOut, st := runCLIInput(t, "x", "tokenize", "--tokenizer", "missing.json"); st != 1 || !strings.Contains(errOut, "missing.json") {
		t.Errorf("missing tokenizer: status %d, %q", st, errOut)
	}
}

func TestTokenizerTrain(t *testing.T) {
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus")
	if err := os.MkdirAll(corpus, 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("the quick brown fox jumps over the lazy dog; func (t *Tokenizer) Encode(text string)\n", 50)
	if err := os.WriteFile(filepath.Join(corpus, "a.txt"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(corpus, "b.bin"), []byte{0, 1, 2, 0xff}, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tok.json")
	if _, errOut, st := runCLI(t, "tokenizer", "train", "--vocab-size", "300", "--out", out, corpus); st != 0 {
		t.Fatalf("train: status %d: %s", st, errOut)
	}
	ids, errOut, st := runCLIInput(t, "the lazy dog", "tokenize", "--tokenizer", out)
	if st != 0 {
		t.Fatalf("tokenize with the trained file: %s", errOut)
	}
	var got []int
	if err := json.Unmarshal([]byte(ids), &got); err != nil || len(got) >= len("the lazy dog") {
		t.Errorf("trained tokenizer gave %s: merges were not learned", ids)
	}
}
