package nccl

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/distributed"
)

// idWords is the id as float64s: 32 pieces of 32 bits (exact in float64),
// then a flag that rank 0 sets when it could not make the id.
const idWords = UniqueIDBytes/4 + 1

// ShareUniqueID gives every rank of c the id that rank 0 makes with
// newID (NCCL.GetUniqueID): what must happen before InitRank, and what
// torchrun-style launchers do through a TCP store. Every rank calls it;
// only rank 0 calls newID. distributed.Comm has no broadcast, so the id
// travels as one AllreduceFloat64 sum of 33 values to which the other
// ranks add zeros: a broadcast's result with the calls the MPI and local
// Comms already have. When rank 0's newID fails, every rank gets an error
// (rank 0 its own, the others one saying that rank 0 failed).
func ShareUniqueID(ctx context.Context, c distributed.Comm, newID func() (UniqueID, error)) (UniqueID, error) {
	var id UniqueID
	var buf [idWords]float64
	var makeErr error
	if c.Rank() == 0 {
		id, makeErr = newID()
		if makeErr != nil {
			buf[idWords-1] = 1
		} else {
			for i := range UniqueIDBytes / 4 {
				buf[i] = float64(binary.LittleEndian.Uint32(id[4*i:]))
			}
		}
	}
	if err := c.AllreduceFloat64(ctx, buf[:], distributed.Sum); err != nil {
		return UniqueID{}, fmt.Errorf("share the NCCL unique id: %w", err)
	}
	if makeErr != nil {
		return UniqueID{}, fmt.Errorf("make the NCCL unique id: %w", makeErr)
	}
	if buf[idWords-1] != 0 {
		return UniqueID{}, fmt.Errorf("rank 0 of %d could not make the NCCL unique id (its error is in its output): %w", c.Size(), api.ErrUnsupported)
	}
	for i := range UniqueIDBytes / 4 {
		binary.LittleEndian.PutUint32(id[4*i:], uint32(buf[i]))
	}
	return id, nil
}

// DeviceForLocalRank is the device ordinal a rank uses under the launcher
// conventions of densessm-mpi: one process per GPU, the rank among the
// processes of its node (MPI_COMM_TYPE_SHARED; mpi.Comm.LocalRank, which
// LOCAL_RANK must agree with) picks the device among those CUDA shows it
// (CUDA_VISIBLE_DEVICES applies). More ranks on a node than devices is an
// error: NCCL refuses two ranks on one device.
func DeviceForLocalRank(localRank, devices int) (int, error) {
	if localRank < 0 || localRank >= devices {
		return 0, fmt.Errorf("local rank %d, but this node shows %d CUDA devices: start one process per GPU (mpirun --npernode %d) or set CUDA_VISIBLE_DEVICES: %w",
			localRank, devices, max(devices, 1), api.ErrConfig)
	}
	return localRank, nil
}
