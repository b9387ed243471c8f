//go:build mpi

package mpi

import (
	"context"
	"testing"

	"github.com/densessm/densessm/distributed"
)

// TestSingleton runs the binding as a process alone (MPI's singleton
// init): rank 0 of 1, collectives that return their input, a cancelled
// wait that breaks the Comm. The multi-rank paths are tested under mpirun
// by cmd/densessm-mpi's tests.
func TestSingleton(t *testing.T) {
	c, err := Init()
	if err != nil {
		t.Fatal(err)
	}
	if c.Rank() != 0 || c.Size() != 1 || c.LocalRank() != 0 {
		t.Fatalf("rank %d of %d, local %d", c.Rank(), c.Size(), c.LocalRank())
	}
	ctx := context.Background()
	buf := c.Buffer(1000)
	for i := range buf {
		buf[i] = float32(i) / 3
	}
	if err := c.AllreduceFloat32(ctx, buf[10:500]); err != nil {
		t.Fatal(err)
	}
	if buf[499] != float32(499)/3 {
		t.Fatalf("sum over one rank changed %g", buf[499])
	}
	if err := c.AllreduceFloat32(ctx, make([]float32, 4)); err == nil {
		t.Fatal("Go memory taken")
	}
	f := []float64{1, -2, 3}
	for _, op := range []distributed.Op{distributed.Sum, distributed.Min, distributed.Max} {
		if err := c.AllreduceFloat64(ctx, f, op); err != nil || f[1] != -2 {
			t.Fatalf("op %d: %v %v", op, f, err)
		}
	}
	big := make([]float64, 100)
	big[99] = 7
	if err := c.AllreduceFloat64(ctx, big, distributed.Sum); err != nil || big[99] != 7 {
		t.Fatalf("100 values: %v", err)
	}
	if err := c.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if err := distributed.Agree(ctx, c, "weights", 1<<60+5); err != nil {
		t.Fatal(err)
	}
	r := distributed.NewGradReducer(c, 64)
	if loss, tokens, err := r.Reduce(ctx, 2.5, 10, nil); err != nil || loss != 2.5 || tokens != 10 {
		t.Fatalf("reduce on one rank: %g %d %v", loss, tokens, err)
	}
	if err := c.Finalize(); err != nil {
		t.Fatal(err)
	}
	if err := c.Barrier(ctx); err == nil {
		t.Fatal("barrier after Finalize")
	}
}
