package cpu

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"unsafe"

	"github.com/densessm/densessm/api"
)

// guarded returns n floats that end where a page the process cannot read
// begins: a kernel that reads one float too many faults.
func guarded(t *testing.T, n int) []float32 {
	page := syscall.Getpagesize()
	size := (4*n + page - 1) / page * page
	mem, err := syscall.Mmap(-1, 0, size+page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[size:], syscall.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&mem[size-4*n])), n)
}

// TestGEMVGuardPage checks that no kernel reads past the last row of the
// matrix or of the vectors, whose ends here touch unreadable pages, for
// row lengths that are not a multiple of 8.
func TestGEMVGuardPage(t *testing.T) {
	r := rand.New(rand.NewPCG(29, 30))
	be := New(api.BackendOptions{Threads: 2})
	forEachGEMVKernel(t, func(t *testing.T, kern *gemvKernel) {
		for _, cols := range []int{1, 5, 13, 39} {
			for _, rows := range []int{1, 6, 9} {
				for nx := 1; nx <= 4; nx++ {
					mat, x := guarded(t, rows*cols), guarded(t, nx*cols)
					copy(mat, randF32(r, rows*cols))
					copy(x, randF32(r, nx*cols))
					y := make([]float32, nx*rows)
					want := naiveGEMV(rows, cols, 1, mat, cols, x, cols, nx, 0, y, rows)
					gemvWith(kern, be, false, rows, cols, 1, mat, cols, x, cols, nx, 0, y, rows)
					if e := gemmRel(y, rows, want, nx, rows); e > 1e-5 {
						t.Errorf("rows=%d cols=%d nx=%d: relative error %.3g", rows, cols, nx, e)
					}
				}
			}
		}
	})
}
