//go:build unix

package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestLoadFIFO checks that Load stops reading a pipe that never ends at the
// size cap.
func TestLoadFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo.json")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("no FIFO:", err)
	}
	defer func(old int64) { maxFileSize = old }(maxFileSize)
	maxFileSize = 1 << 16
	done := make(chan struct{})
	go func() {
		defer close(done)
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		block := make([]byte, 4096)
		for {
			if _, err := w.Write(block); err != nil {
				return // the reader is gone
			}
		}
	}()
	if _, err := Load(path); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("endless FIFO: %v", err)
	}
	<-done
}
