package distributed

import (
	"context"
	"fmt"
	"time"

	"github.com/densessm/densessm/api"
)

// DefaultBucketBytes is the size of the gradient all-reduce's buckets: the
// gradients are packed, tensor after tensor, into buckets of this many
// bytes, each summed by one AllreduceFloat32, so that a model's hundreds
// of small tensors cost a few calls, and no copy of all the gradients is
// ever made.
const DefaultBucketBytes = 4 << 20

// GradReducer is the train.Reducer of a data-parallel run over a Comm: it
// sums each step's gradients over the ranks in buckets and scales them by
// 1/Size, and sums the loss and the target count (one call of two float64s).
type GradReducer struct {
	comm Comm
	buf  []float32
	segs []segment
	// Profile, when set, makes every rank wait for the others (a Barrier)
	// before the gradients are summed, so that Stats tell the time spent
	// waiting for slower ranks from the time of the transfer itself.
	Profile bool
	stats   Stats
}

// segment is a run of a bucket: grads[param][off:off+n] at buf[at:at+n].
type segment struct{ param, off, n, at int }

// Stats are what a GradReducer measured since it was made.
type Stats struct {
	Calls int   // Reduce calls (steps)
	Bytes int64 // gradient bytes summed, per rank
	// Buckets is the number of AllreduceFloat32 calls.
	Buckets int
	// Total is the time spent in Reduce; Wait, its part spent in the
	// Profile barrier (zero without Profile), waiting for slower ranks.
	Total, Wait time.Duration
}

// NewGradReducer returns the reducer of c with buckets of bucketBytes
// bytes (DefaultBucketBytes when 0 or less).
func NewGradReducer(c Comm, bucketBytes int) *GradReducer {
	if bucketBytes <= 0 {
		bucketBytes = DefaultBucketBytes
	}
	return &GradReducer{comm: c, buf: c.Buffer(max(1, bucketBytes/4))}
}

// Stats returns what the reducer measured.
func (r *GradReducer) Stats() Stats { return r.stats }

// Reduce implements train.Reducer.
func (r *GradReducer) Reduce(ctx context.Context, loss float64, tokens int64, grads []api.Parameter) (_ float64, _ int64, err error) {
	defer api.Recover(&err)
	start := time.Now()
	defer func() {
		r.stats.Calls++
		r.stats.Total += time.Since(start)
	}()
	n := r.comm.Size()
	if n == 1 {
		return loss, tokens, nil
	}
	if r.Profile {
		if err := r.comm.Barrier(ctx); err != nil {
			return 0, 0, fmt.Errorf("all-reduce: %w", err)
		}
		r.stats.Wait += time.Since(start)
	}
	views := make([]api.HostView, len(grads))
	for i, g := range grads {
		views[i] = api.ViewFloat32s(g.Value)
	}
	scale := float32(1 / float64(n))
	at := 0
	r.segs = r.segs[:0]
	flush := func() error {
		if at == 0 {
			return nil
		}
		b := r.buf[:at]
		if err := r.comm.AllreduceFloat32(ctx, b); err != nil {
			return fmt.Errorf("all-reduce of the gradients: %w", err)
		}
		r.stats.Buckets++
		r.stats.Bytes += int64(4 * at)
		for _, s := range r.segs {
			dst := views[s.param].V[s.off : s.off+s.n]
			for i, v := range b[s.at : s.at+s.n] {
				dst[i] = v * scale
			}
		}
		at, r.segs = 0, r.segs[:0]
		return nil
	}
	for p, v := range views {
		for off := 0; off < len(v.V); {
			k := min(len(v.V)-off, len(r.buf)-at)
			copy(r.buf[at:at+k], v.V[off:off+k])
			r.segs = append(r.segs, segment{param: p, off: off, n: k, at: at})
			at += k
			off += k
			if at == len(r.buf) {
				if err := flush(); err != nil {
					return 0, 0, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return 0, 0, err
	}
	for _, v := range views {
		v.WriteBack()
	}
	sums := []float64{loss, float64(tokens)}
	if err := r.comm.AllreduceFloat64(ctx, sums, Sum); err != nil {
		return 0, 0, fmt.Errorf("all-reduce of the loss: %w", err)
	}
	return sums[0] / float64(n), int64(sums[1]), nil
}
