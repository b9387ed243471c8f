package distributed

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/train"
)

// Shard returns the share of rank (of size ranks) of src's batches: rows
// [rank*B/size, (rank+1)*B/size) of each batch of B rows, the same global
// batch whatever the number of ranks. Its position is src's, the global
// batch's, so a checkpoint saved by a run of any number of ranks resumes
// on any other. A batch whose rows size does not divide is an error
// wrapping api.ErrConfig.
func Shard(src train.Source, rank, size int) (train.Source, error) {
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("shard %d of %d: %w", rank, size, api.ErrConfig)
	}
	return &shard{src: src, rank: rank, size: size}, nil
}

// CheckBatch returns an error wrapping api.ErrConfig unless size ranks
// can share batches of rows rows.
func CheckBatch(rows, size int) error {
	if size < 1 || rows%size != 0 {
		return fmt.Errorf("--batch-size %d: the global batch is shared by %d ranks, and %d does not divide it: %w", rows, size, size, api.ErrConfig)
	}
	return nil
}

type shard struct {
	src        train.Source
	rank, size int
}

func (s *shard) Next(ctx context.Context) (api.Batch, error) {
	b, err := s.src.Next(ctx)
	if err != nil {
		return api.Batch{}, err
	}
	rows := len(b.Inputs)
	if err := CheckBatch(rows, s.size); err != nil {
		return api.Batch{}, err
	}
	lo, hi := s.rank*rows/s.size, (s.rank+1)*rows/s.size
	out := api.Batch{Inputs: b.Inputs[lo:hi:hi], Targets: b.Targets[lo:hi:hi]}
	if b.Starts != nil {
		out.Starts = b.Starts[lo:hi:hi]
	}
	return out, nil
}

func (s *shard) Position() data.Position    { return s.src.Position() }
func (s *shard) Seek(p data.Position) error { return s.src.Seek(p) }
