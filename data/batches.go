package data

import (
	"fmt"
	"iter"

	"github.com/densessm/densessm/api"
)

// Batches yields the blocks of a token file in file order, not shuffled,
// batchSize blocks a batch (the last batch may hold fewer): every block
// when max is 0 or the file has no more than max batches of blocks, else
// max full batches of blocks spread evenly over the file (block
// floor(k*blocks/(max*batchSize)) for the k-th), so that a validation
// sample covers the whole held-out split, not only its first documents.
// Blocks are those of Loader: block i covers tokens [i*seqLen,
// i*seqLen+seqLen+1). It is meant for validation.
//
// Invalid arguments (no file, a non-positive seqLen or batchSize, a
// negative max) or a read error are yielded once as the error, wrapping
// api.ErrConfig for the arguments, and end the sequence.
func Batches(t *Tokens, seqLen, batchSize int, max int) iter.Seq2[api.Batch, error] {
	return func(yield func(api.Batch, error) bool) {
		if t == nil || seqLen <= 0 || batchSize <= 0 || max < 0 {
			yield(api.Batch{}, fmt.Errorf("validation batches: sequence length %d, batch size %d, at most %d batches (token file given: %t): %w",
				seqLen, batchSize, max, t != nil, api.ErrConfig))
			return
		}
		blocks := NumBlocks(t.Len(), seqLen)
		picked := blocks // blocks yielded
		if want := int64(max) * int64(batchSize); max > 0 && want < blocks {
			picked = want
		}
		block := func(k int64) int64 { return k * blocks / picked }
		ids := make([]int64, 0, batchSize)
		for start, count := int64(0), 0; start < picked; start, count = start+int64(batchSize), count+1 {
			ids = ids[:0]
			for k := start; k < min(start+int64(batchSize), picked); k++ {
				ids = append(ids, block(k))
			}
			batch, err := readBlocks(t, seqLen, ids)
			if err != nil {
				yield(api.Batch{}, fmt.Errorf("validation batch %d: %w", count, err))
				return
			}
			if !yield(batch, nil) {
				return
			}
		}
	}
}

// DocumentStarts returns, for each row of inputs, the positions at which a
// new document begins: those right after a separator (the id Build appends
// to every document), as api.Batch.Starts takes them. A separator at a
// row's end starts nothing in that row. It returns nil when no row has a
// start (and always with sep < 0).
func DocumentStarts(inputs [][]int32, sep int32) [][]int {
	if sep < 0 {
		return nil
	}
	var starts [][]int
	for b, row := range inputs {
		for t, id := range row[:max(len(row)-1, 0)] {
			if id != sep {
				continue
			}
			if starts == nil {
				starts = make([][]int, len(inputs))
			}
			starts[b] = append(starts[b], t+1)
		}
	}
	return starts
}
