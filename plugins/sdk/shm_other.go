//go:build !linux

package sdk

import "os"

// sharedLogits is not used here: the logits travel in the replies.
type sharedLogits struct {
	fd  int
	mem []byte
}

func newSharedLogits(int) *sharedLogits { return nil }

func (s *sharedLogits) close() error { return nil }

func newResultFile() *os.File { return nil }
