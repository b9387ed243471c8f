package distributed

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/densessm/densessm/api"
)

// Op is a reduction of AllreduceFloat64.
type Op int

// The reductions.
const (
	Sum Op = iota
	Min
	Max
)

// Comm is a group of processes, each knowing its rank in [0, Size()). Its
// collective calls must be made by every rank, in the same order; a call
// whose context is cancelled before the others join returns the context's
// error, and the Comm is then broken (every later call fails), since the
// ranks no longer agree on what comes next. A Comm is not safe for
// concurrent use.
type Comm interface {
	Rank() int
	Size() int
	// Buffer returns n float32s to hand to AllreduceFloat32: memory the
	// transport reads and writes without a copy (C memory for MPI). It
	// stays valid as long as the Comm.
	Buffer(n int) []float32
	// AllreduceFloat32 replaces buf, which must be a prefix of a slice
	// Buffer returned, by its element-wise sum over the ranks. Every rank
	// gets the same bits.
	AllreduceFloat32(ctx context.Context, buf []float32) error
	// AllreduceFloat64 replaces buf, a few values, by their element-wise
	// op over the ranks.
	AllreduceFloat64(ctx context.Context, buf []float64, op Op) error
	// Barrier returns once every rank has called it.
	Barrier(ctx context.Context) error
}

// ErrBroken is wrapped by the errors of a Comm that an abandoned
// collective call left unusable.
var ErrBroken = errors.New("the process group is broken: an earlier collective call was abandoned")

// Agree checks that every rank holds the same value v of what: it returns
// nil when they all do, and on every rank an error naming the rank and
// its value, wrapping api.ErrConfig, when they do not.
func Agree(ctx context.Context, c Comm, what string, v uint64) error {
	// Three 22-bit pieces (exact in float64), and their negations: one
	// maximum gives the largest and the smallest value.
	var buf [6]float64
	for i := range 3 {
		p := float64((v >> (22 * i)) & (1<<22 - 1))
		buf[i], buf[3+i] = p, -p
	}
	if err := c.AllreduceFloat64(ctx, buf[:], Max); err != nil {
		return fmt.Errorf("check that the ranks agree on %s: %w", what, err)
	}
	if buf[0] == -buf[3] && buf[1] == -buf[4] && buf[2] == -buf[5] {
		return nil
	}
	return fmt.Errorf("the ranks hold different %s (rank %d of %d: %s): %w", what, c.Rank(), c.Size(), strconv.FormatUint(v, 16), api.ErrConfig)
}
