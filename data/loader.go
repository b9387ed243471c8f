package data

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"

	"github.com/densessm/densessm/api"
)

// Position is where a Loader stands: the next batch Next returns is batch
// Batch of epoch Epoch. It is what a checkpoint saves.
type Position struct {
	Epoch int64 `json:"epoch"`
	Batch int64 `json:"batch"`
}

// Loader yields shuffled training batches of fixed-length blocks of a token
// file. Block i covers tokens [i*SeqLen, i*SeqLen+SeqLen+1): the first
// SeqLen are the inputs, the last SeqLen the targets, so consecutive blocks
// share one token and a file of n tokens has (n-1)/SeqLen blocks. Epoch e
// visits every block once, in the order of a Fisher-Yates shuffle driven
// by math/rand/v2's PCG seeded with (seed, e); batch b of the epoch is blocks
// perm[b*BatchSize : (b+1)*BatchSize], and the last partial batch is
// dropped. The position alone thus determines every later batch: Seek to a
// saved Position and the batches are those an uninterrupted run would see.
//
// A Loader is not safe for concurrent use.
type Loader struct {
	t         *Tokens
	seqLen    int
	batchSize int
	seed      uint64
	blocks    int64
	perEpoch  int64
	pos       Position
	perm      []uint32
	permEpoch int64 // the epoch perm belongs to; -1 when none
}

// NumBlocks returns the number of blocks of seqLen a file of n tokens
// holds: (n-1)/seqLen, 0 when n < 2.
func NumBlocks(n int64, seqLen int) int64 {
	if n < 2 || seqLen <= 0 {
		return 0
	}
	return (n - 1) / int64(seqLen)
}

// NewLoader returns a loader at the start of epoch 0. seqLen and batchSize
// must be positive and the file must hold at least batchSize blocks; if not,
// the error wraps api.ErrConfig.
func NewLoader(t *Tokens, seqLen, batchSize int, seed uint64) (*Loader, error) {
	if t == nil {
		return nil, fmt.Errorf("new loader: no token file: %w", api.ErrConfig)
	}
	if seqLen <= 0 || batchSize <= 0 {
		return nil, fmt.Errorf("new loader: sequence length %d and batch size %d must be positive: %w", seqLen, batchSize, api.ErrConfig)
	}
	blocks := NumBlocks(t.Len(), seqLen)
	if blocks < int64(batchSize) {
		return nil, fmt.Errorf("new loader: %s holds %d tokens, %d blocks of %d, fewer than the batch size %d: %w",
			t.path, t.Len(), blocks, seqLen, batchSize, api.ErrConfig)
	}
	if blocks > math.MaxUint32 {
		return nil, fmt.Errorf("new loader: %d blocks, more than the %d a loader shuffles: %w", blocks, uint64(math.MaxUint32), api.ErrOutOfRange)
	}
	return &Loader{t: t, seqLen: seqLen, batchSize: batchSize, seed: seed,
		blocks: blocks, perEpoch: blocks / int64(batchSize), permEpoch: -1}, nil
}

// BatchesPerEpoch returns the number of batches of an epoch.
func (l *Loader) BatchesPerEpoch() int64 { return l.perEpoch }

// NumBlocks returns the number of blocks of the file.
func (l *Loader) NumBlocks() int64 { return l.blocks }

// Position returns the position of the next batch.
func (l *Loader) Position() Position { return l.pos }

// Seek sets the position of the next batch. Batch may equal
// BatchesPerEpoch, which is the start of the next epoch; a negative epoch
// or a batch outside [0, BatchesPerEpoch] gives an error wrapping
// api.ErrOutOfRange.
func (l *Loader) Seek(p Position) error {
	if p.Epoch < 0 || p.Batch < 0 || p.Batch > l.perEpoch || (p.Batch == l.perEpoch && p.Epoch == math.MaxInt64) {
		return fmt.Errorf("seek to epoch %d batch %d: an epoch has %d batches: %w", p.Epoch, p.Batch, l.perEpoch, api.ErrOutOfRange)
	}
	if p.Batch == l.perEpoch {
		p = Position{Epoch: p.Epoch + 1}
	}
	l.pos = p
	return nil
}

// Next returns the batch at the position and advances it, wrapping to the
// next epoch after the last full batch. The batch's slices are new: the
// caller may keep and change them. On error the position does not move.
func (l *Loader) Next(ctx context.Context) (api.Batch, error) {
	if err := ctx.Err(); err != nil {
		return api.Batch{}, fmt.Errorf("next batch: %w", err)
	}
	if l.permEpoch != l.pos.Epoch {
		l.perm = permutation(l.perm, l.blocks, l.seed, l.pos.Epoch)
		l.permEpoch = l.pos.Epoch
	}
	start := l.pos.Batch * int64(l.batchSize)
	b, err := readBlocks(l.t, l.seqLen, l.perm[start:start+int64(l.batchSize)])
	if err != nil {
		return api.Batch{}, fmt.Errorf("next batch (epoch %d, batch %d): %w", l.pos.Epoch, l.pos.Batch, err)
	}
	l.pos.Batch++
	if l.pos.Batch == l.perEpoch {
		l.pos = Position{Epoch: l.pos.Epoch + 1}
	}
	return b, nil
}

// permutation fills p (reallocated to n entries when too short) with the
// block order of epoch: 0..n-1 shuffled by Fisher-Yates (from the last
// entry i down to 1, swapping it with entry j, j uniform in [0, i]) with
// the outputs of a PCG seeded by (seed, epoch).
func permutation(p []uint32, n int64, seed uint64, epoch int64) []uint32 {
	if int64(cap(p)) < n {
		p = make([]uint32, n)
	}
	p = p[:n]
	for i := range p {
		p[i] = uint32(i)
	}
	src := rand.NewPCG(seed, uint64(epoch))
	for i := n - 1; i > 0; i-- {
		j := boundedRand(src, uint64(i)+1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// boundedRand returns a uniform value in [0, n) from src's outputs, by
// Lemire's multiply-and-reject method. It is written here, not taken from
// rand.Rand, so that the block order depends only on the PCG's outputs.
func boundedRand(src *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		for threshold := -n % n; lo < threshold; {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}

// readBlocks reads the given blocks into a new batch.
func readBlocks[B ~uint32 | ~int64](t *Tokens, seqLen int, blocks []B) (api.Batch, error) {
	n := len(blocks)
	inputs := make([]int32, n*seqLen)
	targets := make([]int32, n*seqLen)
	buf := make([]int32, seqLen+1)
	b := api.Batch{Inputs: make([][]int32, n), Targets: make([][]int32, n)}
	for i, blk := range blocks {
		if err := t.Read(int64(blk)*int64(seqLen), buf); err != nil {
			return api.Batch{}, err
		}
		in := inputs[i*seqLen : (i+1)*seqLen : (i+1)*seqLen]
		tg := targets[i*seqLen : (i+1)*seqLen : (i+1)*seqLen]
		copy(in, buf[:seqLen])
		copy(tg, buf[1:])
		b.Inputs[i], b.Targets[i] = in, tg
	}
	return b, nil
}
