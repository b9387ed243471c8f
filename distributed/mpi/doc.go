// Package mpi is distributed.Comm over MPI (Open MPI, MPICH or any MPI-3
// library with a pkg-config file named ompi; see docs/distributed.md):
// Init, one process of MPI_COMM_WORLD, its all-reduces and barriers,
// Abort and Finalize. The binding uses cgo and is built only with the
// mpi build tag (go build -tags mpi); without it Init returns an error
// wrapping ErrNotBuilt, so the module builds and tests without MPI.
package mpi

import "errors"

// ErrNotBuilt is wrapped by Init's error in a build without the mpi tag.
var ErrNotBuilt = errors.New("built without MPI: rebuild with `go build -tags mpi` (needs an MPI library and its pkg-config file, e.g. Debian's libopenmpi-dev)")
