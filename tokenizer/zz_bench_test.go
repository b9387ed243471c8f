package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func benchText(b *testing.B) string {
	var sb strings.Builder
	for _, f := range []string{"/usr/local/go/src/strings/strings.go", "/usr/local/go/src/fmt/print.go", "/usr/local/go/src/bufio/bufio.go"} {
		d, _ := os.ReadFile(f)
		sb.Write(d)
	}
	return sb.String()
}

func benchEnc(b *testing.B, name string, full bool) {
	tok, err := Load(filepath.Join("testdata", name+".json"))
	if err != nil {
		b.Fatal(err)
	}
	text := benchText(b)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if full {
			tok.EncodeFull(text, true)
		} else {
			tok.Encode(text)
		}
	}
}
func BenchmarkGPT2(b *testing.B)     { benchEnc(b, "gpt2", false) }
func BenchmarkGPT2Full(b *testing.B) { benchEnc(b, "gpt2", true) }
func BenchmarkCL100K(b *testing.B)   { benchEnc(b, "cl100k", false) }
func BenchmarkLlama(b *testing.B)    { benchEnc(b, "llama", false) }
func BenchmarkNeox(b *testing.B)     { benchEnc(b, "neox", false) }
