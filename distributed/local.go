package distributed

import (
	"context"
	"fmt"
	"math"
	"sync"
)

// NewLocalGroup returns a group of n ranks in this process, each to be
// used by its own goroutine: what the tests of data-parallel training run
// on where there is no MPI. Sums are taken in rank order, so every rank
// gets the same bits.
func NewLocalGroup(n int) []Comm {
	g := &group{n: n}
	g.cond = sync.NewCond(&g.mu)
	out := make([]Comm, n)
	for i := range out {
		out[i] = &localComm{g: g, rank: i}
	}
	return out
}

type group struct {
	mu      sync.Mutex
	cond    *sync.Cond
	n       int
	round   int
	arrived [][]float64
	result  []float64
	broken  bool
}

type localComm struct {
	g    *group
	rank int
}

func (c *localComm) Rank() int              { return c.rank }
func (c *localComm) Size() int              { return c.g.n }
func (c *localComm) Buffer(n int) []float32 { return make([]float32, n) }

func (c *localComm) AllreduceFloat32(ctx context.Context, buf []float32) error {
	v := make([]float64, len(buf))
	for i, x := range buf {
		v[i] = float64(x)
	}
	// Sum in float32, as MPI_FLOAT does: float64 here would give other bits.
	res, err := c.g.reduce(ctx, c.rank, v, -1)
	if err != nil {
		return err
	}
	for i := range buf {
		buf[i] = float32(res[i])
	}
	return nil
}

func (c *localComm) AllreduceFloat64(ctx context.Context, buf []float64, op Op) error {
	res, err := c.g.reduce(ctx, c.rank, append([]float64(nil), buf...), op)
	if err != nil {
		return err
	}
	copy(buf, res)
	return nil
}

func (c *localComm) Barrier(ctx context.Context) error {
	_, err := c.g.reduce(ctx, c.rank, nil, Sum)
	return err
}

// reduce is one collective: it returns op over the ranks' v, in rank
// order, once every rank has called it. op -1 is a float32 sum.
func (g *group) reduce(ctx context.Context, rank int, v []float64, op Op) ([]float64, error) {
	stop := context.AfterFunc(ctx, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.broken {
		return nil, ErrBroken
	}
	if g.arrived == nil {
		g.arrived = make([][]float64, g.n)
	}
	if g.arrived[rank] != nil {
		return nil, fmt.Errorf("rank %d called a collective twice: %w", rank, ErrBroken)
	}
	if v == nil {
		v = []float64{}
	}
	g.arrived[rank] = v
	round := g.round
	count := 0
	for _, a := range g.arrived {
		if a != nil {
			count++
		}
	}
	if count == g.n {
		res := append([]float64(nil), g.arrived[0]...)
		for _, a := range g.arrived[1:] {
			if len(a) != len(res) {
				g.broken = true
				g.cond.Broadcast()
				return nil, fmt.Errorf("collective of %d and %d values: %w", len(res), len(a), ErrBroken)
			}
			for i, x := range a {
				switch op {
				case -1:
					res[i] = float64(float32(res[i]) + float32(x))
				case Sum:
					res[i] += x
				case Min:
					res[i] = math.Min(res[i], x)
				case Max:
					res[i] = math.Max(res[i], x)
				}
			}
		}
		g.result, g.arrived = res, nil
		g.round++
		g.cond.Broadcast()
		return res, nil
	}
	for g.round == round {
		if g.broken {
			return nil, ErrBroken
		}
		if err := ctx.Err(); err != nil {
			g.broken = true
			g.cond.Broadcast()
			return nil, err
		}
		g.cond.Wait()
	}
	return g.result, nil
}
