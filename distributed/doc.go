// Package distributed trains one model in several processes at once, data
// parallel: every process (a rank) holds the whole model and the optimizer's
// state, runs its share of each batch (Shard), and the ranks sum their
// gradients after every step (GradReducer, a train.Reducer) so that each
// applies the same update and the replicas stay equal bit for bit.
//
// The transport is a Comm. Package distributed/mpi implements it over MPI
// (built with the mpi tag; cmd/densessm-mpi is the command), and
// NewLocalGroup in process, for tests. This package itself is pure Go and
// needs neither MPI nor cgo. See docs/distributed.md.
package distributed
