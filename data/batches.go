package data

import (
	"fmt"
	"iter"

	"github.com/densessm/densessm/api"
)

// Batches yields the blocks of a token file in file order, not shuffled,
// batchSize blocks a batch (the last batch may hold fewer): the first max
// batches, or all when max is 0. Blocks are those of Loader: block i covers
// tokens [i*seqLen, i*seqLen+seqLen+1). It is meant for validation.
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
		ids := make([]int64, 0, batchSize)
		for start, count := int64(0), 0; start < blocks && (max == 0 || count < max); start, count = start+int64(batchSize), count+1 {
			ids = ids[:0]
			for b := start; b < min(start+int64(batchSize), blocks); b++ {
				ids = append(ids, b)
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
