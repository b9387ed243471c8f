//go:build !mpi

package mpi

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/distributed"
)

// Comm is a process of MPI_COMM_WORLD; in this build, never made.
type Comm struct{}

var _ distributed.Comm = (*Comm)(nil)

// Init returns an error wrapping ErrNotBuilt: this build has no MPI.
func Init() (*Comm, error) { return nil, fmt.Errorf("mpi: %w", ErrNotBuilt) }

func (*Comm) Rank() int                                                         { return 0 }
func (*Comm) Size() int                                                         { return 1 }
func (*Comm) LocalRank() int                                                    { return -1 }
func (*Comm) Buffer(n int) []float32                                            { return make([]float32, n) }
func (*Comm) AllreduceFloat32(context.Context, []float32) error                 { return ErrNotBuilt }
func (*Comm) AllreduceFloat64(context.Context, []float64, distributed.Op) error { return ErrNotBuilt }
func (*Comm) Barrier(context.Context) error                                     { return ErrNotBuilt }
func (*Comm) Abort(code int)                                                    {}
func (*Comm) Finalize() error                                                   { return ErrNotBuilt }
