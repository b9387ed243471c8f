// Package wire is what the plugin host and the plugin SDK share: the
// go-plugin handshake, the plugin set that serves and dials the Runtime
// service, the Arrow IPC encoding of tensors and id batches, and the
// mapping of api's sentinel errors onto gRPC statuses and back.
package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/api/arrowtensor"
	"github.com/densessm/densessm/internal/arrowcheck"
	pb "github.com/densessm/densessm/plugins/proto"
)

// ProtocolVersion is the version of the Runtime service this build speaks.
// A plugin built against another version is refused at the handshake.
const ProtocolVersion = 1

// PluginName is the name of the one plugin a densessm plugin process serves.
const PluginName = "runtime"

// Handshake is the go-plugin handshake: the cookie keeps a plugin binary
// from running as a plain program by mistake (it says so and exits).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "DENSESSM_PLUGIN",
	MagicCookieValue: "7c0f4b1e-densessm-runtime",
}

// MaxMessage is the largest gRPC message either side accepts: 1 GiB, so
// that the logits of a long sequence over a large vocabulary fit in one
// reply (gRPC's default of 4 MiB takes 20 rows of a 50,280-token
// vocabulary). Parameters travel in groups below it.
const MaxMessage = 1 << 30

// Window is the HTTP/2 flow-control window of both sides (16 MiB): with
// gRPC's default of 64 KiB, one step's logits (201 KB for a 50,280-token
// vocabulary) wait for window updates three times on the way.
const Window = 16 << 20

// Buffer is the size of both sides' socket write and read buffers.
const Buffer = 1 << 20

// Probe is the string a plugin tells the host the address of (Describe):
// a host that can read it from the plugin's memory (process_vm_readv) may
// have large results read from there directly, without a copy in between.
var Probe = []byte("densessm: a host may read this process's memory")

// GRPCPlugin serves (Impl set) or dials the Runtime service.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl pb.RuntimeServer
}

// GRPCServer registers the Runtime service.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterRuntimeServer(s, p.Impl)
	return nil
}

// GRPCClient returns a pb.RuntimeClient on the connection.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pb.NewRuntimeClient(c), nil
}

// Plugins returns the versioned plugin sets of a host (server nil) or a
// plugin process.
func Plugins(server pb.RuntimeServer) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{ProtocolVersion: {PluginName: &GRPCPlugin{Impl: server}}}
}

// EncodeTensor writes h as an Arrow IPC stream: one record batch with one
// column.
func EncodeTensor(h api.HostTensor) ([]byte, error) {
	field, arr, err := arrowtensor.FromHost(h)
	if err != nil {
		return nil, err
	}
	defer arr.Release()
	schema := arrow.NewSchema([]arrow.Field{field}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{arr}, int64(arr.Len()))
	defer rec.Release()
	var buf bytes.Buffer
	buf.Grow(len(h.Data) + 1024)
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("arrow tensor %q: %w", h.Name, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("arrow tensor %q: %w", h.Name, err)
	}
	return buf.Bytes(), nil
}

// DecodeTensor reads a tensor EncodeTensor wrote. Every message is
// checked before arrow-go decodes it (arrowcheck), so that no input makes
// it allocate more than b holds.
func DecodeTensor(b []byte) (api.HostTensor, error) {
	return readTensor(bytes.NewReader(b), int64(len(b)))
}

// ReadTensor reads one tensor of an Arrow IPC stream of at most size bytes
// from r (a plugin's result memfd). Its Data is memory of its own.
func ReadTensor(r io.Reader, size int64) (api.HostTensor, error) {
	return readTensor(r, size)
}

// readTensor reads one tensor of an Arrow IPC stream of at most size
// bytes.
func readTensor(r io.Reader, size int64) (_ api.HostTensor, err error) {
	defer func() { // arrow-go panics on some malformed streams
		if r := recover(); r != nil {
			err = fmt.Errorf("arrow tensor: %v: %w", r, api.ErrCorrupt)
		}
	}()
	rd, err := ipc.NewReaderFromMessageReader(arrowcheck.NewMessages(r, size), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return api.HostTensor{}, streamError(err)
	}
	defer rd.Release()
	if !rd.Next() {
		if err := rd.Err(); err != nil {
			return api.HostTensor{}, streamError(err)
		}
		return api.HostTensor{}, fmt.Errorf("arrow tensor: no record batch: %w", api.ErrCorrupt)
	}
	rec := rd.RecordBatch()
	if rec.NumCols() != 1 {
		return api.HostTensor{}, fmt.Errorf("arrow tensor: %d columns, want 1: %w", rec.NumCols(), api.ErrCorrupt)
	}
	return arrowtensor.ViewHost(rec.Schema().Field(0), rec.Column(0))
}

// EncodeTensors encodes each tensor.
func EncodeTensors(ts []api.HostTensor) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		var err error
		if out[i], err = EncodeTensor(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DecodeTensors decodes each stream.
func DecodeTensors(bs [][]byte) ([]api.HostTensor, error) {
	out := make([]api.HostTensor, len(bs))
	for i, b := range bs {
		var err error
		if out[i], err = DecodeTensor(b); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// EncodeIDs encodes a batch of token sequences of one length as an int32
// tensor [B,T] named "ids".
func EncodeIDs(ids [][]int32) ([]byte, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("no sequences: %w", api.ErrShape)
	}
	T := len(ids[0])
	raw := make([]byte, 0, 4*len(ids)*T)
	for i, seq := range ids {
		if len(seq) != T {
			return nil, fmt.Errorf("sequence %d has %d tokens, sequence 0 has %d: %w", i, len(seq), T, api.ErrShape)
		}
		for _, id := range seq {
			raw = binary.LittleEndian.AppendUint32(raw, uint32(id))
		}
	}
	return EncodeTensor(api.HostTensor{Name: "ids", DType: api.I32, Shape: api.Shape{len(ids), T}, Data: raw})
}

// maxEmptyRows bounds the sequences of a batch of empty sequences that
// DecodeIDs takes: their number is not bounded by the bytes that hold them.
const maxEmptyRows = 1 << 20

// DecodeIDs reads what EncodeIDs wrote: at least one sequence (and at most
// maxEmptyRows empty ones).
func DecodeIDs(b []byte) ([][]int32, error) {
	h, err := DecodeTensor(b)
	if err != nil {
		return nil, err
	}
	if h.DType != api.I32 || len(h.Shape) != 2 {
		return nil, fmt.Errorf("ids: %s %v, want I32 [B,T]: %w", h.DType, h.Shape, api.ErrCorrupt)
	}
	B, T := h.Shape[0], h.Shape[1]
	if B == 0 || (T == 0 && B > maxEmptyRows) {
		return nil, fmt.Errorf("ids: %d sequences of %d tokens: %w", B, T, api.ErrCorrupt)
	}
	flat := make([]int32, B*T)
	for i := range flat {
		flat[i] = int32(binary.LittleEndian.Uint32(h.Data[4*i:]))
	}
	out := make([][]int32, B)
	for i := range out {
		out[i] = flat[i*T : (i+1)*T : (i+1)*T]
	}
	return out, nil
}

// TensorBytes returns t's elements as little-endian bytes: the backend's
// own storage where it exposes it (no copy), else a download.
func TensorBytes(t api.Tensor) []byte {
	if h, ok := t.(api.HostFloat32s); ok && t.DType() == api.F32 && littleEndian {
		f := h.HostFloat32s()
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
	}
	raw := make([]byte, t.DType().Bytes(t.Shape().NumElements()))
	t.Backend().Download(raw, t)
	return raw
}

// Float32s views little-endian bytes as float32s without copying, when
// they are 4-byte aligned (ok false otherwise).
func Float32s(b []byte) (_ []float32, ok bool) {
	if !littleEndian {
		return nil, false
	}
	if len(b) == 0 {
		return []float32{}, true
	}
	if len(b)%4 != 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4), true
}

// littleEndian reports whether this machine stores numbers as the wire
// does.
var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// The error kinds that cross the boundary: the trailer names the sentinel
// an error wraps.
var kinds = []struct {
	name string
	err  error
}{
	{"config", api.ErrConfig},
	{"not-found", api.ErrNotFound},
	{"shape", api.ErrShape},
	{"dtype", api.ErrDType},
	{"unsupported", api.ErrUnsupported},
	{"corrupt", api.ErrCorrupt},
	{"out-of-range", api.ErrOutOfRange},
	{"out-of-memory", api.ErrOutOfMemory},
	{"not-finite", api.ErrNotFinite},
	{"internal", api.ErrInternal},
	{"canceled", context.Canceled},
	{"deadline", context.DeadlineExceeded},
}

// ErrorTrailer is the gRPC trailer that names an error's kind.
const ErrorTrailer = "densessm-error"

// ErrorKind names the sentinel err wraps ("" for none).
func ErrorKind(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return ""
}

// KindError returns the sentinel a kind names (nil for none).
func KindError(kind string) error {
	for _, k := range kinds {
		if k.name == kind {
			return k.err
		}
	}
	return nil
}

// ChunkSize is the most bytes of a tensor one streamed message carries.
const ChunkSize = 4 << 20

// WriteTensorStream writes h as an Arrow IPC stream to send, cut into
// pieces of at most ChunkSize bytes. The tensor's bytes are not copied
// before send gets them.
func WriteTensorStream(h api.HostTensor, send func([]byte) error) error {
	field, arr, err := arrowtensor.FromHost(h)
	if err != nil {
		return err
	}
	defer arr.Release()
	schema := arrow.NewSchema([]arrow.Field{field}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{arr}, int64(arr.Len()))
	defer rec.Release()
	w := ipc.NewWriter(chunker(send), ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		return fmt.Errorf("arrow tensor %q: %w", h.Name, err)
	}
	return w.Close()
}

// chunker is an io.Writer that passes what it is given to send in pieces
// of at most ChunkSize bytes.
type chunker func([]byte) error

func (c chunker) Write(b []byte) (int, error) {
	for i := 0; i < len(b); i += ChunkSize {
		if err := c(b[i:min(i+ChunkSize, len(b))]); err != nil {
			return i, err
		}
	}
	return len(b), nil
}

// ReadTensorStream reads a tensor WriteTensorStream wrote, of at most
// size bytes in all, from the pieces next returns (io.EOF after the last).
// Its Data is memory of its own.
func ReadTensorStream(next func() ([]byte, error), size int64) (api.HostTensor, error) {
	return readTensor(&pieces{next: next}, size)
}

// StreamSize bounds the bytes of the Arrow IPC stream of a tensor of n
// bytes: its data plus the messages around it.
func StreamSize(n int64) int64 { return n + 64<<10 }

// streamError keeps the error of the transport (a plugin that died
// mid-stream) and calls anything else a corrupt stream.
func streamError(err error) error {
	var te transportError
	if errors.As(err, &te) {
		return te.err
	}
	return fmt.Errorf("arrow tensor: %v: %w", err, api.ErrCorrupt)
}

// transportError marks an error of next, not of the stream's content.
type transportError struct{ err error }

func (e transportError) Error() string { return e.err.Error() }

// pieces is an io.Reader over the pieces next returns.
type pieces struct {
	next func() ([]byte, error)
	cur  []byte
}

func (p *pieces) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		c, err := p.next()
		if err == io.EOF {
			return 0, io.EOF
		}
		if err != nil {
			return 0, transportError{err}
		}
		p.cur = c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}
