package nccl

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/distributed"
)

// The id travels over a distributed.Comm (the local group here; MPI's in
// densessm-mpi) from rank 0 to every rank, every byte value included.
func TestShareUniqueID(t *testing.T) {
	var want UniqueID
	for i := range want {
		want[i] = byte(255 - i)
	}
	want[5], want[6], want[7], want[8] = 0xff, 0xff, 0xff, 0xff
	for _, n := range []int{1, 3} {
		comms := distributed.NewLocalGroup(n)
		got := make([]UniqueID, n)
		errs := make([]error, n)
		calls := make([]int, n)
		var wg sync.WaitGroup
		for r, c := range comms {
			wg.Go(func() {
				got[r], errs[r] = ShareUniqueID(context.Background(), c, func() (UniqueID, error) {
					calls[r]++
					return want, nil
				})
			})
		}
		wg.Wait()
		for r := range n {
			if errs[r] != nil || got[r] != want {
				t.Errorf("%d ranks, rank %d: %v %x", n, r, errs[r], got[r][:8])
			}
			if (r == 0) != (calls[r] == 1) {
				t.Errorf("%d ranks: rank %d made the id %d times", n, r, calls[r])
			}
		}
	}
}

// When rank 0 cannot make the id, every rank returns an error instead of
// waiting for an id that never comes.
func TestShareUniqueIDFailure(t *testing.T) {
	comms := distributed.NewLocalGroup(2)
	errs := make([]error, 2)
	boom := errors.New("no network interface")
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Go(func() {
			_, errs[r] = ShareUniqueID(context.Background(), c, func() (UniqueID, error) { return UniqueID{}, boom })
		})
	}
	wg.Wait()
	if !errors.Is(errs[0], boom) {
		t.Errorf("rank 0: %v", errs[0])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "rank 0 of 2 could not make the NCCL unique id") {
		t.Errorf("rank 1: %v", errs[1])
	}
}

func TestDeviceForLocalRank(t *testing.T) {
	if d, err := DeviceForLocalRank(1, 2); d != 1 || err != nil {
		t.Errorf("local rank 1 of 2 devices: %d %v", d, err)
	}
	for _, c := range [][2]int{{2, 2}, {0, 0}, {-1, 4}} {
		if _, err := DeviceForLocalRank(c[0], c[1]); !errors.Is(err, api.ErrConfig) {
			t.Errorf("local rank %d, %d devices: %v", c[0], c[1], err)
		}
	}
}
