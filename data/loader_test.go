package data

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// tokenFile writes n tokens 0, 1, 2, ... (mod vocab) and opens them.
func tokenFile(t *testing.T, n int) *Tokens {
	t.Helper()
	toks := make([]int32, n)
	for i := range toks {
		toks[i] = int32(i % 60000)
	}
	path := filepath.Join(t.TempDir(), "t.tokens")
	if err := WriteTokens(path, 60000, toks); err != nil {
		t.Fatal(err)
	}
	tk, err := OpenTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tk.Close() })
	return tk
}

// blockOf checks that row r of a batch is a block of the counting file
// and returns its index.
func blockOf(t *testing.T, b api.Batch, r, seqLen int) int {
	t.Helper()
	in, tg := b.Inputs[r], b.Targets[r]
	if len(in) != seqLen || len(tg) != seqLen {
		t.Fatalf("row %d: %d inputs, %d targets, want %d", r, len(in), len(tg), seqLen)
	}
	start := int(in[0])
	if start%seqLen != 0 {
		t.Fatalf("row %d starts at token %d, not a block start", r, start)
	}
	for i := range seqLen {
		if in[i] != int32(start+i) || tg[i] != int32(start+i+1) {
			t.Fatalf("row %d: inputs %v targets %v are not block %d", r, in, tg, start/seqLen)
		}
	}
	return start / seqLen
}

// epochOrder returns the blocks of the next epoch, batch by batch.
func epochOrder(t *testing.T, l *Loader, seqLen int) []int {
	t.Helper()
	var order []int
	for range l.BatchesPerEpoch() {
		b, err := l.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for r := range b.Inputs {
			order = append(order, blockOf(t, b, r, seqLen))
		}
	}
	return order
}

func TestLoaderEpochs(t *testing.T) {
	const seqLen, batch = 8, 4
	tk := tokenFile(t, 8*43+1) // 43 blocks: 10 batches, 3 blocks dropped per epoch
	l, err := NewLoader(tk, seqLen, batch, 7)
	if err != nil {
		t.Fatal(err)
	}
	if l.NumBlocks() != 43 || l.BatchesPerEpoch() != 10 {
		t.Fatalf("%d blocks, %d batches per epoch", l.NumBlocks(), l.BatchesPerEpoch())
	}
	var orders [][]int
	for e := range 3 {
		if p := l.Position(); p != (Position{Epoch: int64(e)}) {
			t.Fatalf("position %+v at the start of epoch %d", p, e)
		}
		order := epochOrder(t, l, seqLen)
		// Every block at most once, all but the 3 of the partial batch.
		if len(order) != 40 {
			t.Fatalf("epoch %d: %d blocks", e, len(order))
		}
		seen := map[int]bool{}
		for _, b := range order {
			if seen[b] || b < 0 || b >= 43 {
				t.Fatalf("epoch %d: block %d twice or out of range", e, b)
			}
			seen[b] = true
		}
		// And exactly the permutation's first 40.
		perm := permutation(nil, 43, 7, int64(e))
		for i, b := range order {
			if uint32(b) != perm[i] {
				t.Fatalf("epoch %d: block %d at %d, the permutation has %d", e, b, i, perm[i])
			}
		}
		orders = append(orders, order)
	}
	if slices.Equal(orders[0], orders[1]) || slices.Equal(orders[1], orders[2]) {
		t.Error("two epochs in the same order")
	}
	// Every block once per epoch: the full permutation.
	perm := permutation(nil, 43, 7, 0)
	sorted := slices.Clone(perm)
	slices.Sort(sorted)
	for i, b := range sorted {
		if b != uint32(i) {
			t.Fatalf("permutation misses block %d", i)
		}
	}
	// Another seed, another order; the same seed, the same batches.
	l2, _ := NewLoader(tk, seqLen, batch, 8)
	if slices.Equal(epochOrder(t, l2, seqLen), orders[0]) {
		t.Error("seeds 7 and 8 give the same order")
	}
	l3, _ := NewLoader(tk, seqLen, batch, 7)
	if !slices.Equal(epochOrder(t, l3, seqLen), orders[0]) {
		t.Error("seed 7 twice gives different orders")
	}
}

func TestLoaderSeek(t *testing.T) {
	const seqLen, batch = 5, 3
	tk := tokenFile(t, 5*20+3)
	straight, err := NewLoader(tk, seqLen, batch, 42)
	if err != nil {
		t.Fatal(err)
	}
	var all []api.Batch
	var positions []Position
	for range 20 { // more than three epochs of 6 batches
		positions = append(positions, straight.Position())
		b, err := straight.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b)
	}
	for _, k := range []int{0, 1, 5, 6, 7, 13} {
		resumed, _ := NewLoader(tk, seqLen, batch, 42)
		if err := resumed.Seek(positions[k]); err != nil {
			t.Fatal(err)
		}
		for i := k; i < len(all); i++ {
			b, err := resumed.Next(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(b.Inputs, all[i].Inputs, slices.Equal) || !slices.EqualFunc(b.Targets, all[i].Targets, slices.Equal) {
				t.Fatalf("resumed at %d (%+v): batch %d differs", k, positions[k], i)
			}
		}
	}
	l, _ := NewLoader(tk, seqLen, batch, 42)
	if err := l.Seek(Position{Epoch: 2, Batch: 6}); err != nil || l.Position() != (Position{Epoch: 3}) {
		t.Errorf("seek to the end of epoch 2: %v, position %+v", err, l.Position())
	}
	for _, p := range []Position{{-1, 0}, {0, -1}, {0, 7}} {
		if err := l.Seek(p); !errors.Is(err, api.ErrOutOfRange) {
			t.Errorf("seek %+v: error %v", p, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := l.Position()
	if _, err := l.Next(ctx); !errors.Is(err, context.Canceled) || l.Position() != before {
		t.Errorf("cancelled Next: error %v, position %+v from %+v", err, l.Position(), before)
	}
}

func TestNewLoaderErrors(t *testing.T) {
	tk := tokenFile(t, 17) // 16/4 = 4 blocks of 4
	if _, err := NewLoader(tk, 4, 4, 0); err != nil {
		t.Errorf("4 blocks, batch 4: %v", err)
	}
	for _, tc := range []struct{ seqLen, batch int }{{4, 5}, {0, 1}, {4, 0}, {17, 1}} {
		if _, err := NewLoader(tk, tc.seqLen, tc.batch, 0); !errors.Is(err, api.ErrConfig) {
			t.Errorf("seqLen %d batch %d: error %v", tc.seqLen, tc.batch, err)
		}
	}
	if _, err := NewLoader(nil, 4, 1, 0); !errors.Is(err, api.ErrConfig) {
		t.Errorf("no file: error %v", err)
	}
}

func TestBatches(t *testing.T) {
	const seqLen = 4
	tk := tokenFile(t, 4*11+2) // 11 blocks
	var blocks []int
	var sizes []int
	for b, err := range Batches(tk, seqLen, 3, 0) {
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(b.Inputs))
		for r := range b.Inputs {
			blocks = append(blocks, blockOf(t, b, r, seqLen))
		}
	}
	want := make([]int, 11)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(blocks, want) || !slices.Equal(sizes, []int{3, 3, 3, 2}) {
		t.Errorf("blocks %v in batches of %v", blocks, sizes)
	}
	// Two batches of 3 out of 11 blocks: blocks k*11/6, spread over the file.
	blocks = blocks[:0]
	for b, err := range Batches(tk, seqLen, 3, 2) {
		if err != nil {
			t.Fatal(err)
		}
		for r := range b.Inputs {
			blocks = append(blocks, blockOf(t, b, r, seqLen))
		}
	}
	if !slices.Equal(blocks, []int{0, 1, 3, 5, 7, 9}) {
		t.Errorf("max 2: blocks %v, want [0 1 3 5 7 9]", blocks)
	}
	n := 0
	for range Batches(tk, seqLen, 3, 4) { // 4 batches of 3 is more than 11 blocks: all of them
		n++
	}
	if n != 4 {
		t.Errorf("max 4: %d batches, want all 4", n)
	}
	for range Batches(tk, seqLen, 3, 0) {
		break // stopping early must not panic
	}
	for _, args := range [][3]int{{0, 1, 0}, {4, 0, 0}, {4, 1, -1}} {
		var errs []error
		for _, err := range Batches(tk, args[0], args[1], args[2]) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], api.ErrConfig) {
			t.Errorf("arguments %v: %v", args, errs)
		}
	}
}

// TestPermutationStable pins the block order: a checkpoint's Position
// means the same batches only while this order never changes.
func TestPermutationStable(t *testing.T) {
	for _, tc := range []struct {
		epoch int64
		want  []uint32
	}{
		{0, []uint32{6, 9, 8, 1, 2, 4, 3, 5, 10, 11, 0, 7}},
		{5, []uint32{7, 5, 3, 0, 10, 4, 11, 1, 2, 9, 8, 6}},
	} {
		if got := permutation(nil, 12, 1, tc.epoch); !slices.Equal(got, tc.want) {
			t.Errorf("epoch %d: order %v, was %v", tc.epoch, got, tc.want)
		}
	}
}

func TestBoundedRand(t *testing.T) {
	src := rand.NewPCG(3, 4)
	for _, n := range []uint64{1, 3, 7, 1<<63 + 5} {
		counts := make([]int, min(n, 8))
		for range 6000 {
			v := boundedRand(src, n)
			if v >= n {
				t.Fatalf("boundedRand(%d) = %d", n, v)
			}
			if n <= 8 {
				counts[v]++
			}
		}
		for v, c := range counts {
			if n <= 8 && (c < 6000/int(n)*8/10 || c > 6000/int(n)*12/10) {
				t.Errorf("n %d: value %d drawn %d times of 6000", n, v, c)
			}
		}
	}
}
