package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// Bounds of a task file.
const (
	MaxMCLine     = 1 << 20 // bytes per line of a task file
	MaxMCExamples = 1 << 20 // examples per task file
	MaxMCChoices  = 1 << 10 // choices per example
)

// MCExample is one multiple-choice question: a line of a task file,
//
//	{"context": "if err != nil {\n\treturn", "choices": ["err", "fi"], "label": 0}
//
// with "context", "choices" and "label" required and "delimiter" optional.
type MCExample struct {
	// Context is the text the choices continue; it may be empty.
	Context string `json:"context"`
	// Choices are the candidate continuations, at least two, none empty.
	Choices []string `json:"choices"`
	// Label is the index of the right choice, from 0.
	Label int `json:"label"`
	// Delimiter, when set, is what goes between the context and each
	// choice for this example (often "", where a choice follows the
	// context directly); nil leaves it to MCOptions.
	Delimiter *string `json:"delimiter,omitempty"`
}

// Validate reports an example that cannot be scored: fewer than two or
// more than MaxMCChoices choices, or an empty one (api.ErrCorrupt), a
// label out of range (api.ErrOutOfRange).
func (e MCExample) Validate() error {
	if len(e.Choices) < 2 || len(e.Choices) > MaxMCChoices {
		return fmt.Errorf("%d choices: want 2 to %d: %w", len(e.Choices), MaxMCChoices, api.ErrCorrupt)
	}
	for i, c := range e.Choices {
		if c == "" {
			return fmt.Errorf("choice %d is empty: %w", i, api.ErrCorrupt)
		}
	}
	if e.Label < 0 || e.Label >= len(e.Choices) {
		return fmt.Errorf("label %d: want 0 to %d (the index of a choice): %w", e.Label, len(e.Choices)-1, api.ErrOutOfRange)
	}
	return nil
}

// mcLine is a line of a task file as written, to tell a missing field from
// a zero one.
type mcLine struct {
	Context   *string   `json:"context"`
	Choices   *[]string `json:"choices"`
	Label     *int      `json:"label"`
	Delimiter *string   `json:"delimiter"`
}

// ReadMCTask reads a task file: JSONL, one MCExample per line, blank lines
// skipped. Each line must be one JSON object with the fields "context",
// "choices" and "label" and optionally "delimiter", no others, in valid
// UTF-8, at most MaxMCLine bytes (line end excluded); a file holds 1 to MaxMCExamples
// examples. Errors name the line (from 1) and wrap api.ErrCorrupt
// (malformed lines, missing or unknown fields, no examples),
// api.ErrOutOfRange (a label out of range, a line or file too long) or the
// reader's error.
func ReadMCTask(r io.Reader) ([]MCExample, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxMCLine+len("\r\n"))
	var out []MCExample
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) > MaxMCLine {
			return nil, fmt.Errorf("task line %d: longer than %d bytes: %w", line, MaxMCLine, api.ErrOutOfRange)
		}
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\uFEFF"))
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if len(out) == MaxMCExamples {
			return nil, fmt.Errorf("task line %d: more than %d examples: %w", line, MaxMCExamples, api.ErrOutOfRange)
		}
		ex, err := parseMCLine(b)
		if err != nil {
			return nil, fmt.Errorf("task line %d: %w", line, err)
		}
		out = append(out, ex)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("task line %d: longer than %d bytes: %w", line+1, MaxMCLine, api.ErrOutOfRange)
		}
		return nil, fmt.Errorf("task line %d: %w", line+1, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("task: no examples: %w", api.ErrCorrupt)
	}
	return out, nil
}

// parseMCLine decodes and validates one example.
func parseMCLine(b []byte) (MCExample, error) {
	if !utf8.Valid(b) {
		return MCExample{}, fmt.Errorf("not valid UTF-8: %w", api.ErrCorrupt)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l mcLine
	if err := dec.Decode(&l); err != nil {
		return MCExample{}, fmt.Errorf("%v: %w", err, api.ErrCorrupt)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return MCExample{}, fmt.Errorf("more than one JSON value on the line: %w", api.ErrCorrupt)
	}
	switch {
	case l.Context == nil:
		return MCExample{}, fmt.Errorf("no \"context\" field: %w", api.ErrCorrupt)
	case l.Choices == nil:
		return MCExample{}, fmt.Errorf("no \"choices\" field: %w", api.ErrCorrupt)
	case l.Label == nil:
		return MCExample{}, fmt.Errorf("no \"label\" field: %w", api.ErrCorrupt)
	}
	ex := MCExample{Context: *l.Context, Choices: *l.Choices, Label: *l.Label, Delimiter: l.Delimiter}
	if err := ex.Validate(); err != nil {
		return MCExample{}, err
	}
	return ex, nil
}
