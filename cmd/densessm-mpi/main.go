// Command densessm-mpi is `densessm train` data parallel over MPI: every
// rank holds the model and the optimizer, trains on its share of each
// batch, and the gradients are summed with MPI_Allreduce after every step.
//
//	mpirun -np 4 densessm-mpi train --out DIR [the flags of densessm train]
//
// It takes the flags of `densessm train`, and its run directories are the
// same: a run resumes on any number of ranks, or with densessm itself. It
// is built with the mpi tag (go build -tags mpi ./cmd/densessm-mpi; make
// mpi), which needs an MPI library; built without it, it says so and
// exits. See docs/distributed.md.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/densessm/densessm/distributed"
	"github.com/densessm/densessm/distributed/mpi"
	"github.com/densessm/densessm/internal/cli"

	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cpu"
)

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cli.GCPercent)
	}
	comm, err := mpi.Init()
	if err != nil {
		fmt.Fprintf(os.Stderr, "densessm-mpi: %v\n", err)
		os.Exit(1)
	}
	if err := distributed.CheckEnv(os.Getenv, comm.Rank(), comm.Size(), comm.LocalRank()); err != nil {
		fmt.Fprintf(os.Stderr, "densessm-mpi: rank %d of %d: %v\n", comm.Rank(), comm.Size(), err)
		comm.Abort(1)
	}
	code := cli.MainDataParallel(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, comm)
	switch code {
	case 0:
		if err := comm.Finalize(); err != nil {
			fmt.Fprintf(os.Stderr, "densessm-mpi: rank %d of %d: %v\n", comm.Rank(), comm.Size(), err)
			os.Exit(1)
		}
	case 130, 143:
		// SIGINT or SIGTERM: mpirun stops every rank so on Ctrl-C and
		// when one rank fails. Not finalizing tells it that this rank did
		// not end by itself.
		fmt.Fprintf(os.Stderr, "densessm-mpi: rank %d of %d stopped by a signal (mpirun stops every rank on Ctrl-C, and when one rank fails: its message then names that rank)\n", comm.Rank(), comm.Size())
	default:
		// An error, printed and naming the rank: end every rank.
		comm.Abort(code)
	}
	os.Exit(code)
}
