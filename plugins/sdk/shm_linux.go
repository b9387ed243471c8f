package sdk

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// sharedLogits is a memfd mapped into this process, where Step writes a
// state's logits for the host to read through its own mapping.
type sharedLogits struct {
	fd  int
	mem []byte
}

// newSharedLogits makes a memfd of n bytes, mapped; nil when the system
// refuses (the logits then travel in the replies).
func newSharedLogits(n int) *sharedLogits {
	if n <= 0 {
		return nil
	}
	fd, err := unix.MemfdCreate("densessm-logits", unix.MFD_CLOEXEC)
	if err != nil {
		return nil
	}
	if err := unix.Ftruncate(fd, int64(n)); err != nil {
		unix.Close(fd)
		return nil
	}
	mem, err := unix.Mmap(fd, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil
	}
	return &sharedLogits{fd: fd, mem: mem}
}

// close unmaps and closes the memfd.
func (s *sharedLogits) close() error {
	if s == nil {
		return nil
	}
	err := unix.Munmap(s.mem)
	if cerr := unix.Close(s.fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shared logits: %w", err)
	}
	return nil
}

// newResultFile returns a memfd for a large result that the host reads
// through /proc; nil when the system refuses.
func newResultFile() *os.File {
	fd, err := unix.MemfdCreate("densessm-result", unix.MFD_CLOEXEC)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "densessm-result")
}
