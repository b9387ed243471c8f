package sdk

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/densessm/densessm/plugins/internal/wire"
)

// stepSocket returns the name of the socket that takes Steps as binary
// frames (see wire.StepFrame), listening from the first call on: a unix
// socket in the abstract namespace (no file to clean up), which accepts
// only connections of this process's user. "" when it cannot listen.
func (s *server) stepSocket() string {
	s.sockOnce.Do(func() {
		name := fmt.Sprintf("@densessm-step-%d-%016x", os.Getpid(), rand.Uint64())
		ln, err := net.Listen("unix", name)
		if err != nil {
			return
		}
		s.sockName = name
		go s.acceptSteps(ln)
	})
	return s.sockName
}

func (s *server) acceptSteps(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !sameUser(c) {
			c.Close()
			continue
		}
		go s.serveSteps(c)
	}
}

// sameUser reports whether the peer of c runs as this process's user.
func sameUser(c net.Conn) bool {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return int(cred.Uid) == os.Getuid()
}

// serveSteps answers the step frames of one connection (one host state)
// until it closes.
func (s *server) serveSteps(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var ids []int32
	var out []byte
	for {
		model, state, next, err := wire.ReadStepFrame(r, ids)
		if err != nil {
			return
		}
		ids = next
		n, err := s.sharedStep(model, state, ids)
		out = wire.StepReply(out[:0], n, err)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// sharedStep runs a step whose logits go into the state's memfd,
// recovering a panic into an error.
func (s *server) sharedStep(model, state uint64, ids []int32) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError("step frame", r)
		}
	}()
	reply, err := s.step(context.Background(), model, state, ids, true)
	if err != nil {
		return 0, err
	}
	return int(reply.Len), nil
}
