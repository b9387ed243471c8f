// Package arrowcheck reads the messages of Arrow IPC streams for arrow-go,
// checking each before arrow-go decodes it: arrow-go trusts the lengths in
// the flatbuffer metadata and allocates by them, so that a damaged or
// hostile input could make it allocate without bound (a fuzzed input
// asked for 32 GB). The dataset readers and the plugin protocol read Arrow
// through it.
package arrowcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/densessm/densessm/api"
)

// MaxMetadata caps the metadata of one IPC message (a schema with its
// metadata, or a record batch's buffer list).
const MaxMetadata = 16 << 20

// Messages reads the messages of an Arrow IPC stream for arrow-go's
// ipc.Reader (ipc.NewReaderFromMessageReader), checking each message
// before arrow-go decodes it. The metadata must be a well-formed Message
// (checkMessage), the body must fit in what is left of the input, and the
// buffers of a record batch must lie in the body (and declare sane
// uncompressed sizes when compressed).
type Messages struct {
	r        io.Reader
	left     int64 // bytes left in the input: no message is longer
	msg      *ipc.Message
	refCount atomic.Int64
}

// NewMessages reads messages from r, which holds at most size bytes.
func NewMessages(r io.Reader, size int64) *Messages {
	m := &Messages{r: r, left: size}
	m.refCount.Add(1)
	return m
}

// Retain adds a reference.
func (m *Messages) Retain() { m.refCount.Add(1) }

// Release drops a reference, and the current message with the last one.
func (m *Messages) Release() {
	if m.refCount.Add(-1) == 0 && m.msg != nil {
		m.msg.Release()
		m.msg = nil
	}
}

// read reads len(b) bytes of the message.
func (m *Messages) read(b []byte, what string) error {
	if int64(len(b)) > m.left {
		return fmt.Errorf("arrow: %s of %d bytes runs past the end of the input: %w", what, len(b), api.ErrCorrupt)
	}
	if _, err := io.ReadFull(m.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("arrow: truncated %s: %w", what, api.ErrCorrupt)
		}
		return err
	}
	m.left -= int64(len(b))
	return nil
}

// Message returns the next message, valid until the next call; io.EOF at
// the end of the stream.
func (m *Messages) Message() (*ipc.Message, error) {
	if m.msg != nil {
		m.msg.Release()
		m.msg = nil
	}
	if m.left == 0 {
		return nil, io.EOF
	}
	var word [4]byte
	if err := m.read(word[:], "message header"); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(word[:])
	if n == 0xFFFFFFFF { // continuation marker, then the length
		if err := m.read(word[:], "message header"); err != nil {
			return nil, err
		}
		n = binary.LittleEndian.Uint32(word[:])
	}
	if n == 0 {
		return nil, io.EOF // end-of-stream marker
	}
	if n < 8 || n > MaxMetadata {
		return nil, fmt.Errorf("arrow: message metadata of %d bytes: %w", n, api.ErrCorrupt)
	}
	meta := make([]byte, n)
	if err := m.read(meta, "message metadata"); err != nil {
		return nil, err
	}
	info, err := checkMessage(meta)
	if err != nil {
		return nil, err
	}
	if info.bodyLen > m.left {
		return nil, fmt.Errorf("arrow: message body of %d bytes runs past the end of the input: %w", info.bodyLen, api.ErrCorrupt)
	}
	body := make([]byte, info.bodyLen)
	if err := m.read(body, "message body"); err != nil {
		return nil, err
	}
	if err := info.checkBody(body); err != nil {
		return nil, err
	}
	m.msg = ipc.NewMessage(memory.NewBufferBytes(meta), memory.NewBufferBytes(body))
	return m.msg, nil
}

// maxInflate caps the uncompressed size a compressed buffer may declare:
// 4 GiB, and 4096 times its compressed size plus 1 MiB.
func maxInflate(compressed int64) int64 { return min(1<<32, compressed*4096+1<<20) }

// checkBody checks the buffers of a record batch against its body.
func (info messageInfo) checkBody(body []byte) error {
	for i, b := range info.buffers {
		off, n := b[0], b[1]
		if off < 0 || n < 0 || off > int64(len(body)) || n > int64(len(body))-off {
			return fmt.Errorf("arrow: buffer %d [%d, +%d) is outside the message body of %d bytes: %w", i, off, n, len(body), api.ErrCorrupt)
		}
		if info.compressed && n >= 8 {
			size := int64(binary.LittleEndian.Uint64(body[off:]))
			if size != -1 && (size < 0 || size > maxInflate(n)) {
				return fmt.Errorf("arrow: compressed buffer %d declares %d bytes uncompressed: %w", i, size, api.ErrCorrupt)
			}
		}
	}
	return nil
}
