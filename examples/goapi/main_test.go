package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestTour runs the tour and checks each part did its work: generated
// text after the prompt, a finite perplexity, and a falling loss.
func TestTour(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, 8); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Log(text)
	first, _, _ := strings.Cut(text, "\nperplexity")
	if len(strings.TrimPrefix(first, "func main() {")) < 20 {
		t.Errorf("little generated text: %q", first)
	}
	m := regexp.MustCompile(`perplexity ([0-9.]+) over (\d+) tokens`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no perplexity in %q", text)
	}
	// The default model scores this small program at 2.27; an untrained
	// one would be near its vocabulary of 4096.
	if p, _ := strconv.ParseFloat(m[1], 64); !(p > 1 && p < 10) {
		t.Errorf("perplexity %v of the default model on plain Go, want between 1 and 10", p)
	}
	var losses []float64
	for _, l := range regexp.MustCompile(`step \d+ loss ([0-9.]+)`).FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(l[1], 64)
		losses = append(losses, v)
	}
	if len(losses) != 8 || !(losses[7] < losses[0]) {
		t.Errorf("losses %v: want 8, falling", losses)
	}
}
