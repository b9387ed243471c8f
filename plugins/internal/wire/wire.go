// Package wire is what the plugin host and the plugin SDK share: the
// go-plugin handshake, the plugin set that serves and dials the Runtime
// service, the Arrow IPC encoding of tensors and id batches, and the
// mapping of api's sentinel errors onto gRPC statuses and back.
package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/api/arrowtensor"
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

// EncodeTensor writes h as an Arrow IPC stream of one record batch with one
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

// DecodeTensor reads a tensor EncodeTensor wrote. Its Data aliases the
// decoded buffer (Go memory, no further copy).
func DecodeTensor(b []byte) (api.HostTensor, error) {
	r, err := ipc.NewReader(bytes.NewReader(b), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return api.HostTensor{}, fmt.Errorf("arrow tensor: %v: %w", err, api.ErrCorrupt)
	}
	defer r.Release()
	if !r.Next() {
		if err := r.Err(); err != nil {
			return api.HostTensor{}, fmt.Errorf("arrow tensor: %v: %w", err, api.ErrCorrupt)
		}
		return api.HostTensor{}, fmt.Errorf("arrow tensor: no record batch: %w", api.ErrCorrupt)
	}
	rec := r.RecordBatch()
	if rec.NumCols() != 1 {
		return api.HostTensor{}, fmt.Errorf("arrow tensor: %d columns, want 1: %w", rec.NumCols(), api.ErrCorrupt)
	}
	return arrowtensor.ToHost(rec.Schema().Field(0), rec.Column(0))
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
	flat := make([]int32, 0, len(ids)*T)
	for i, seq := range ids {
		if len(seq) != T {
			return nil, fmt.Errorf("sequence %d has %d tokens, sequence 0 has %d: %w", i, len(seq), T, api.ErrShape)
		}
		flat = append(flat, seq...)
	}
	return EncodeTensor(api.HostTensor{Name: "ids", DType: api.I32, Shape: api.Shape{len(ids), T}, Data: int32Bytes(flat)})
}

// DecodeIDs reads what EncodeIDs wrote.
func DecodeIDs(b []byte) ([][]int32, error) {
	h, err := DecodeTensor(b)
	if err != nil {
		return nil, err
	}
	if h.DType != api.I32 || len(h.Shape) != 2 {
		return nil, fmt.Errorf("ids: %s %v, want I32 [B,T]: %w", h.DType, h.Shape, api.ErrCorrupt)
	}
	B, T := h.Shape[0], h.Shape[1]
	flat := make([]int32, B*T)
	copy(int32Bytes(flat), h.Data)
	out := make([][]int32, B)
	for i := range out {
		out[i] = flat[i*T : (i+1)*T : (i+1)*T]
	}
	return out, nil
}

// TensorBytes returns t's elements as little-endian bytes: the backend's
// own storage where it exposes it (no copy), else a download.
func TensorBytes(t api.Tensor) []byte {
	if h, ok := t.(api.HostFloat32s); ok && t.DType() == api.F32 {
		f := h.HostFloat32s()
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
	}
	raw := make([]byte, t.Shape().NumElements()*t.DType().Size())
	t.Backend().Download(raw, t)
	return raw
}

func int32Bytes(v []int32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
}

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
