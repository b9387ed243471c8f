package host

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/densessm/densessm/api"
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

// sharedFiles reports that this host can read a plugin's memfds.
const sharedFiles = true

// openFile opens the memfd fd of generation gen of the plugin's process.
func (p *Plugin) openFile(gen, fd int) (*os.File, error) {
	pid := p.pid(gen)
	if pid == 0 {
		return nil, fmt.Errorf("the plugin process has exited: %w", api.ErrNotFound)
	}
	return os.Open(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
}

// readRemote copies len(dst) bytes at addr in the memory of process pid
// into dst (process_vm_readv: the host is the plugin's parent, which the
// kernel lets read its memory).
func readRemote(pid int, addr uint64, dst []byte) error {
	for len(dst) > 0 {
		local := []unix.Iovec{{Base: &dst[0]}}
		local[0].SetLen(len(dst))
		n, err := unix.ProcessVMReadv(pid, local, []unix.RemoteIovec{{Base: uintptr(addr), Len: len(dst)}}, 0)
		if err != nil {
			return fmt.Errorf("reading the plugin's memory: %w", err)
		}
		if n <= 0 {
			return fmt.Errorf("reading the plugin's memory: %d bytes: %w", n, api.ErrCorrupt)
		}
		dst = dst[n:]
		addr += uint64(n)
	}
	return nil
}
