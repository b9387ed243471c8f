package wire

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/densessm/densessm/api"
)

// A Step can also travel as a binary frame on a unix socket beside the
// gRPC connection (on Linux, for states whose logits are shared through a
// memfd): a gRPC round trip costs about 0.3 ms on a small machine, a
// frame on a socket a tenth of that. All numbers are little-endian.
//
//	request: model u64, state u64, n u32, n × id i32
//	reply:   ok u8 = 1, len i64                    (the state's length)
//	     or: ok u8 = 0, kind u16-prefixed string, message u32-prefixed string

// MaxStepIDs caps the ids of one step frame (one per sequence).
const MaxStepIDs = 1 << 20

// StepFrame appends a step request to buf.
func StepFrame(buf []byte, model, state uint64, ids []int32) []byte {
	buf = binary.LittleEndian.AppendUint64(buf, model)
	buf = binary.LittleEndian.AppendUint64(buf, state)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(ids)))
	for _, id := range ids {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
	}
	return buf
}

// ReadStepFrame reads a step request, reusing ids.
func ReadStepFrame(r io.Reader, ids []int32) (model, state uint64, _ []int32, err error) {
	var head [20]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, 0, nil, err
	}
	model = binary.LittleEndian.Uint64(head[0:])
	state = binary.LittleEndian.Uint64(head[8:])
	n := binary.LittleEndian.Uint32(head[16:])
	if n > MaxStepIDs {
		return 0, 0, nil, fmt.Errorf("step frame of %d ids: %w", n, api.ErrCorrupt)
	}
	raw := make([]byte, 4*n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return 0, 0, nil, err
	}
	ids = ids[:0]
	for i := range int(n) {
		ids = append(ids, int32(binary.LittleEndian.Uint32(raw[4*i:])))
	}
	return model, state, ids, nil
}

// StepReply appends the reply to a step: the state's length, or the error.
func StepReply(buf []byte, n int, err error) []byte {
	if err == nil {
		buf = append(buf, 1)
		return binary.LittleEndian.AppendUint64(buf, uint64(n))
	}
	kind, msg := ErrorKind(err), err.Error()
	buf = append(buf, 0)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(kind)))
	buf = append(buf, kind...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(msg)))
	return append(buf, msg...)
}

// StepError is an error a plugin answered a step frame with: its message
// and the kind it names (KindError).
type StepError struct {
	Kind, Msg string
}

func (e *StepError) Error() string { return e.Msg }

// ReadStepReply reads a step reply: the state's length, a *StepError the
// plugin answered, or the transport's error.
func ReadStepReply(r io.Reader) (int, error) {
	var ok [1]byte
	if _, err := io.ReadFull(r, ok[:]); err != nil {
		return 0, err
	}
	if ok[0] == 1 {
		var n [8]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return 0, err
		}
		return int(binary.LittleEndian.Uint64(n[:])), nil
	}
	var kl [2]byte
	if _, err := io.ReadFull(r, kl[:]); err != nil {
		return 0, err
	}
	kind := make([]byte, binary.LittleEndian.Uint16(kl[:]))
	if _, err := io.ReadFull(r, kind); err != nil {
		return 0, err
	}
	var ml [4]byte
	if _, err := io.ReadFull(r, ml[:]); err != nil {
		return 0, err
	}
	msgLen := binary.LittleEndian.Uint32(ml[:])
	if msgLen > 1<<20 {
		return 0, fmt.Errorf("step reply with a message of %d bytes: %w", msgLen, api.ErrCorrupt)
	}
	msg := make([]byte, msgLen)
	if _, err := io.ReadFull(r, msg); err != nil {
		return 0, err
	}
	return 0, &StepError{Kind: string(kind), Msg: string(msg)}
}
