package tokenizer

import (
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// heapPeak runs f and returns the largest heap (bytes of heap objects)
// seen while it ran, less the heap before, sampled every millisecond. The
// garbage collector runs more often meanwhile, so that the heap is close
// to the live data.
func heapPeak(f func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	if v := read(); v > peak.Load() {
		peak.Store(v)
	}
	close(stop)
	<-done
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

// longWord returns n bytes of random ASCII letters: one word for every
// pre-tokenizer.
func longWord(n int) string {
	r := rand.New(rand.NewPCG(7, 8))
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(byte('a' + r.IntN(26)))
	}
	return b.String()
}

// BenchmarkLongWord encodes one word of 10 MB (random letters, and the
// letter a repeated) and reports the peak heap per input byte.
func BenchmarkLongWord(b *testing.B) {
	tok := loadFixture(b, "gpt2")
	for _, w := range []struct{ name, text string }{
		{"random", longWord(10 << 20)},
		{"aaaa", strings.Repeat("a", 10<<20)},
	} {
		b.Run(w.name, func(b *testing.B) {
			b.SetBytes(int64(len(w.text)))
			var peak uint64
			for i := 0; i < b.N; i++ {
				peak = max(peak, heapPeak(func() {
					if _, err := tok.Encode(w.text); err != nil {
						b.Fatal(err)
					}
				}))
			}
			b.ReportMetric(float64(peak)/float64(len(w.text)), "peak-B/byte")
		})
	}
}

// TestLongWordsMatchNaive checks the path of pieces too long for the word
// cache, with and without offsets, against the textbook algorithm.
func TestLongWordsMatchNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	m := randomMergesBPE(t, r, 80, 8)
	for _, n := range []int{maxCachedWord - 1, maxCachedWord, 1000, 3000} {
		word := make([]byte, n)
		ids := make([]int32, n)
		for k := range word {
			word[k] = "abc"[r.IntN(3)]
			ids[k] = m.vocab[string(word[k])]
		}
		want := naiveMerge(m, ids)
		var got []int32
		pos := int32(0)
		for _, tk := range tokenIDs(t, m, string(word)) {
			if tk.lo != pos || string(word[tk.lo:tk.hi]) != m.tokens[tk.id] {
				t.Fatalf("%d bytes: token %v at %d", n, tk, pos)
			}
			pos = tk.hi
			got = append(got, tk.id)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%d bytes: tokenize differs from the textbook merge", n)
		}
		plain, err := m.tokenizeIDs(string(word), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range plain {
			if int32(plain[i]) != want[i] {
				t.Fatalf("%d bytes: tokenizeIDs differs from the textbook merge", n)
			}
		}
		if len(plain) != len(want) {
			t.Fatalf("%d bytes: %d ids, want %d", n, len(plain), len(want))
		}
	}
}

// TestLongWordMemory checks the peak heap of encoding one long word (2 MB
// of random letters), per input byte: about 34 bytes (symbols 16, merge
// queue 8, ids 8), where it used to be about 76.
func TestLongWordMemory(t *testing.T) {
	tok := loadFixture(t, "gpt2")
	w := longWord(2 << 20)
	peak := heapPeak(func() {
		if _, err := tok.Encode(w); err != nil {
			t.Fatal(err)
		}
	})
	perByte := float64(peak) / float64(len(w))
	t.Logf("peak live heap %.1f bytes per input byte", perByte)
	if perByte > 50 {
		t.Errorf("peak live heap %.1f bytes per input byte, more than 50", perByte)
	}
}
