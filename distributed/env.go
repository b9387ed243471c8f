package distributed

import (
	"fmt"
	"strconv"

	"github.com/densessm/densessm/api"
)

// CheckEnv checks the variables a torchrun-style launcher sets against
// the rank and size the transport gave (MPI's, for densessm-mpi), which
// are the ones used: RANK and WORLD_SIZE, when set, must equal them, and
// LOCAL_RANK, when set, must equal the launcher's local rank (localRank,
// -1 when the transport does not know it). MASTER_ADDR and MASTER_PORT
// name a rendezvous that MPI does not need; they are not read. getenv is
// os.Getenv in a command. The error, wrapping api.ErrConfig, names the
// variable and both values: a job launched by torchrun, or whose variables
// were copied from another job, stops before it trains on the wrong
// share of the data.
func CheckEnv(getenv func(string) string, rank, size, localRank int) error {
	for _, v := range []struct {
		name string
		want int
	}{{"RANK", rank}, {"WORLD_SIZE", size}, {"LOCAL_RANK", localRank}} {
		s := getenv(v.name)
		if s == "" || v.want < 0 {
			continue
		}
		got, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%s=%q: want an integer: %w", v.name, s, api.ErrConfig)
		}
		if got != v.want {
			return fmt.Errorf("%s=%d, but MPI made this process rank %d of %d (local rank %d): launch with mpirun or srun, and unset %s or make it agree: %w",
				v.name, got, rank, size, localRank, v.name, api.ErrConfig)
		}
	}
	return nil
}
