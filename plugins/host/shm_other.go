//go:build !linux

package host

import (
	"errors"
	"os"
)

// mapShared is not available here: the logits travel in the replies.
func mapShared(pid, fd, n int) ([]byte, error) {
	return nil, errors.New("no shared logits on this system")
}

func unmapShared([]byte) {}

// sharedFiles reports that this host cannot read a plugin's memfds.
const sharedFiles = false

func (p *Plugin) openFile(gen, fd int) (*os.File, error) {
	return nil, errors.New("no shared files on this system")
}

func readRemote(pid int, addr uint64, dst []byte) error {
	return errors.New("no reading of another process's memory on this system")
}
