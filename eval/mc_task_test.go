package eval

import (
	"errors"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/tokenizer"
)

// TestReadMCTask checks a good file: blank lines, CRLF line ends, a
// byte-order mark, the optional delimiter.
func TestReadMCTask(t *testing.T) {
	in := "\uFEFF{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 1}\r\n" +
		"\n   \n" +
		`{"label": 0, "choices": ["x", "y", "z"], "context": "", "delimiter": ""}` + "\n" +
		`{"context": "q", "choices": ["é", "ü"], "label": 0, "delimiter": " "}`
	ex, err := ReadMCTask(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 3 {
		t.Fatalf("%d examples, want 3", len(ex))
	}
	if e := ex[0]; e.Context != "a" || len(e.Choices) != 2 || e.Choices[1] != "c" || e.Label != 1 || e.Delimiter != nil {
		t.Errorf("example 0: %+v", e)
	}
	if e := ex[1]; e.Context != "" || len(e.Choices) != 3 || e.Label != 0 || e.Delimiter == nil || *e.Delimiter != "" {
		t.Errorf("example 1: %+v", e)
	}
	if e := ex[2]; e.Choices[0] != "é" || e.Delimiter == nil || *e.Delimiter != " " {
		t.Errorf("example 2: %+v", e)
	}
}

// TestReadMCTaskErrors checks that each malformed file is refused with the
// right sentinel and the number of the offending line.
func TestReadMCTaskErrors(t *testing.T) {
	good := `{"context": "a", "choices": ["b", "c"], "label": 0}` + "\n"
	cases := []struct {
		name, in string
		line     string
		want     error
	}{
		{"not JSON", good + "{context\n", "line 2", api.ErrCorrupt},
		{"unknown field", good + good + `{"context": "a", "choices": ["b", "c"], "label": 0, "gold": 1}`, "line 3", api.ErrCorrupt},
		{"no label", "\n" + `{"context": "a", "choices": ["b", "c"]}`, "line 2", api.ErrCorrupt},
		{"no context", `{"choices": ["b", "c"], "label": 0}`, "line 1", api.ErrCorrupt},
		{"no choices", `{"context": "a", "label": 0}`, "line 1", api.ErrCorrupt},
		{"one choice", `{"context": "a", "choices": ["b"], "label": 0}`, "line 1", api.ErrCorrupt},
		{"empty choice", good + `{"context": "a", "choices": ["b", ""], "label": 0}`, "line 2", api.ErrCorrupt},
		{"label too large", `{"context": "a", "choices": ["b", "c"], "label": 2}`, "line 1", api.ErrOutOfRange},
		{"negative label", `{"context": "a", "choices": ["b", "c"], "label": -1}`, "line 1", api.ErrOutOfRange},
		{"fractional label", `{"context": "a", "choices": ["b", "c"], "label": 0.5}`, "line 1", api.ErrCorrupt},
		{"two values", good + `{"context": "a", "choices": ["b", "c"], "label": 0} {}`, "line 2", api.ErrCorrupt},
		{"an array", `[1, 2]`, "line 1", api.ErrCorrupt},
		{"invalid UTF-8", good + "{\"context\": \"\xff\", \"choices\": [\"b\", \"c\"], \"label\": 0}", "line 2", api.ErrCorrupt},
		{"line too long", good + good + `{"context": "` + strings.Repeat("a", MaxMCLine) + `"}`, "line 3", api.ErrOutOfRange},
		{"line too long by one", good + `{"context": "` + strings.Repeat("a", MaxMCLine+1-len(`{"context": "`)) + "\n", "line 2", api.ErrOutOfRange},
		{"no examples", "\n\n", "task", api.ErrCorrupt},
	}
	for _, c := range cases {
		_, err := ReadMCTask(strings.NewReader(c.in))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.line) {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, c.want, c.line)
		}
	}
	// A line of MaxMCLine bytes is accepted, whatever its line end.
	pad := MaxMCLine - len(good) + 1
	long := good[:len(`{"context": "`)] + strings.Repeat("a", pad) + good[len(`{"context": "`):len(good)-1]
	for _, end := range []string{"\n", "\r\n"} {
		if _, err := ReadMCTask(strings.NewReader(long + end + long + end)); err != nil {
			t.Errorf("lines of %d bytes ended by %q: %v", len(long), end, err)
		}
	}
	readErr := errors.New("disk on fire")
	if _, err := ReadMCTask(iotest.ErrReader(readErr)); !errors.Is(err, readErr) {
		t.Errorf("reader error: %v", err)
	}
}

// TestGoSyntaxTask checks the committed example task: 40 to 60 examples
// of four choices, the right answer at each position at least ten times,
// no choice repeated, every pair encodable by a GPT-2 style tokenizer.
func TestGoSyntaxTask(t *testing.T) {
	f, err := os.Open("testdata/go-syntax.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ex, err := ReadMCTask(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) < 40 || len(ex) > 60 {
		t.Errorf("%d examples, want 40 to 60", len(ex))
	}
	tok, err := tokenizer.Load("../tokenizer/testdata/gpt2.json")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[int]int{}
	for i, e := range ex {
		labels[e.Label]++
		if len(e.Choices) != 4 {
			t.Errorf("example %d: %d choices, want 4", i, len(e.Choices))
		}
		seen := map[string]bool{}
		for _, c := range e.Choices {
			if seen[c] {
				t.Errorf("example %d: choice %q twice", i, c)
			}
			seen[c] = true
			if _, _, err := EncodePair(tok, e.Context, delimiter(e, MCOptions{})+c); err != nil {
				t.Errorf("example %d, choice %q: %v", i, c, err)
			}
		}
	}
	for label := range 4 {
		if labels[label] < 10 {
			t.Errorf("the right answer is choice %d in %d examples, want at least 10", label, labels[label])
		}
	}
}

// FuzzReadMCTask checks that any input gives examples that validate, or
// an error, never a panic.
func FuzzReadMCTask(f *testing.F) {
	f.Add(`{"context": "a", "choices": ["b", "c"], "label": 1}` + "\n\n" + `{"context": "", "choices": ["x", "y"], "label": 0, "delimiter": ""}`)
	f.Add(`{"context": "a", "choices": ["b"], "label": 0}`)
	f.Add("\uFEFF{}\r\n[1]\n")
	f.Fuzz(func(t *testing.T, in string) {
		ex, err := ReadMCTask(strings.NewReader(in))
		if err != nil {
			return
		}
		for i, e := range ex {
			if err := e.Validate(); err != nil {
				t.Fatalf("example %d of an accepted file: %v", i, err)
			}
		}
	})
}
