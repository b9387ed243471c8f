//go:build !linux

package sdk

// sharedLogits is not used here: the logits travel in the replies.
type sharedLogits struct {
	fd  int
	mem []byte
}

func newSharedLogits(int) *sharedLogits { return nil }

func (s *sharedLogits) close() error { return nil }
