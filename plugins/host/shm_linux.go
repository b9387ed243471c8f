package host

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mapShared maps, read-only, n bytes of the memfd fd of the plugin process
// pid (through /proc/PID/fd/FD), where its Step writes a state's logits.
func mapShared(pid, fd, n int) ([]byte, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != int64(n) {
		return nil, fmt.Errorf("shared logits: %d bytes, want %d (%v)", st.Size(), n, err)
	}
	return unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
}

// unmapShared releases a mapping of mapShared.
func unmapShared(mem []byte) {
	if mem != nil {
		unix.Munmap(mem)
	}
}
