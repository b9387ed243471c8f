package tokenizer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// benchLines returns about 1 MB of Go source from GOROOT, split into lines
// (each keeps its newline).
func benchLines(b *testing.B) []string {
	b.Helper()
	var lines []string
	size := 0
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Skip(err)
	}
	root := filepath.Join(strings.TrimSpace(string(goroot)), "src", "strings")
	entries, err := os.ReadDir(root)
	if err != nil {
		b.Skip(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(root, e.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.SplitAfter(string(data), "\n") {
			lines = append(lines, l)
			size += len(l)
		}
		if size > 1<<20 {
			break
		}
	}
	return lines
}

// benchEncode measures Encode line by line on one goroutine.
func benchEncode(b *testing.B, name string) {
	tok := loadFixture(b, name)
	lines := benchLines(b)
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, l := range lines {
			if _, err := tok.Encode(l); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkEncodeGPT2(b *testing.B)   { benchEncode(b, "gpt2") }
func BenchmarkEncodeCL100K(b *testing.B) { benchEncode(b, "cl100k") }
func BenchmarkEncodeLlama(b *testing.B)  { benchEncode(b, "llama") }
func BenchmarkEncodeNeoX(b *testing.B)   { benchEncode(b, "neox") }

// BenchmarkEncodeReader measures EncodeReader on the same text as the
// Encode benchmarks, read as one stream, on one goroutine; compare with
// BenchmarkEncodeGPT2 and BenchmarkEncodeCL100K.
func BenchmarkEncodeReader(b *testing.B) {
	for _, name := range []string{"gpt2", "cl100k"} {
		b.Run(name, func(b *testing.B) {
			tok := loadFixture(b, name)
			if !tok.Streams() {
				b.Fatalf("%s does not stream", name)
			}
			text := strings.Join(benchLines(b), "")
			b.SetBytes(int64(len(text)))
			tokens := 0
			count := func(ids []int) error {
				tokens += len(ids)
				return nil
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tokens = 0
				if err := tok.EncodeReader(context.Background(), strings.NewReader(text), true, count); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(tokens), "tokens")
		})
	}
}

// BenchmarkEncodeBatch measures EncodeBatch over all cores.
func BenchmarkEncodeBatch(b *testing.B) {
	tok := loadFixture(b, "gpt2")
	lines := benchLines(b)
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tok.EncodeBatch(lines); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFile measures a tokenizer.json on a text file given by the
// environment (TOKENIZER_BENCH_JSON, TOKENIZER_BENCH_TEXT), line by line:
// Encode on one goroutine, and EncodeBatch (run with -cpu to choose the
// number of cores). compare_hf.py drives it. It reports the number of
// tokens per run, to check against Hugging Face's count.
func BenchmarkFile(b *testing.B) {
	jsonPath, textPath := os.Getenv("TOKENIZER_BENCH_JSON"), os.Getenv("TOKENIZER_BENCH_TEXT")
	if jsonPath == "" || textPath == "" {
		b.Skip("TOKENIZER_BENCH_JSON and TOKENIZER_BENCH_TEXT are not set")
	}
	tok, err := Load(jsonPath)
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(textPath)
	if err != nil {
		b.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	b.Run("Encode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		tokens := 0
		for i := 0; i < b.N; i++ {
			tokens = 0
			for _, l := range lines {
				ids, err := tok.Encode(l)
				if err != nil {
					b.Fatal(err)
				}
				tokens += len(ids)
			}
		}
		b.ReportMetric(float64(tokens), "tokens")
	})
	b.Run("EncodeBatch", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		tokens := 0
		for i := 0; i < b.N; i++ {
			out, err := tok.EncodeBatch(lines)
			if err != nil {
				b.Fatal(err)
			}
			tokens = 0
			for _, ids := range out {
				tokens += len(ids)
			}
		}
		b.ReportMetric(float64(tokens), "tokens")
	})
}
