package checkpoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// checkPyTorch compares every tensor of c with e bit for bit. Unlike
// checkExpectation it also reads the dtypes Float32s refuses (I8, U8, BOOL)
// from the raw bytes, and checks F64, I32 and I64 exactly rather than
// through float32.
func checkPyTorch(t *testing.T, c *Checkpoint, e expectation) {
	t.Helper()
	infos := c.Tensors()
	if len(infos) != len(e.Tensors) {
		t.Fatalf("%d tensors, want %d", len(infos), len(e.Tensors))
	}
	for i, want := range e.Tensors {
		got := infos[i]
		if got.Name != want.Name || got.DType.String() != want.DType || !got.Shape.Equal(want.Shape) {
			t.Fatalf("tensor %d is %q %s%v, want %q %s%v", i, got.Name, got.DType, got.Shape, want.Name, want.DType, want.Shape)
		}
		raw, err := c.Raw(got.Name)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(raw)) != got.Size || len(raw) != len(want.Values)*got.DType.Size() {
			t.Fatalf("%s: %d raw bytes, Size %d, want %d values", got.Name, len(raw), got.Size, len(want.Values))
		}
		for j, w := range want.Values {
			var v float64
			switch got.DType {
			case api.I8:
				v = float64(int8(raw[j]))
			case api.U8, api.Bool:
				v = float64(raw[j])
			case api.I32:
				v = float64(int32(binary.LittleEndian.Uint32(raw[4*j:])))
			case api.I64:
				v = float64(int64(binary.LittleEndian.Uint64(raw[8*j:])))
			case api.F64:
				v = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*j:]))
			default:
				continue // compared through Float32s below
			}
			if v != w {
				t.Errorf("%s[%d] = %v, want %v", got.Name, j, v, w)
			}
		}
		if !decodable(got.DType) {
			continue
		}
		vals, err := c.Float32s(got.Name)
		if err != nil {
			t.Fatal(err)
		}
		for j, w := range want.Values {
			if math.Float32bits(vals[j]) != math.Float32bits(float32(w)) {
				t.Errorf("%s: Float32s[%d] = %v, want %v", got.Name, j, vals[j], w)
			}
		}
	}
	if md := c.Metadata(); len(md) != 0 {
		t.Errorf("metadata %v, want none", md)
	}
}

func TestPyTorchFixture(t *testing.T) {
	want := readExpectation(t, filepath.Join("testdata", "pytorch", "model.json"))
	for _, name := range []string{"model.bin", "proto4.bin"} {
		t.Run(name, func(t *testing.T) {
			c, err := Open(filepath.Join("testdata", "pytorch", name))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			checkPyTorch(t, c, want)
			// Views count in full even where they share a storage.
			if n := c.NumParameters(); n != 15+4+12+1+3+4+3+3+4+3+0+24+12+6+24+12 {
				t.Errorf("NumParameters = %d", n)
			}
		})
	}
}

// TestPyTorchViews checks how the views of one storage are exposed: the
// contiguous ones in place (sharing bytes), the others copied (Offset -1).
func TestPyTorchViews(t *testing.T) {
	c, err := Open(filepath.Join("testdata", "pytorch", "model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info := func(name string) TensorInfo {
		ti, ok := c.Lookup(name)
		if !ok {
			t.Fatalf("no tensor %q", name)
		}
		return ti
	}
	base, rows := info("v.base"), info("v.rows")
	if base.Offset < 0 || rows.Offset != base.Offset+12*4 || rows.Size != 12*4 {
		t.Errorf("v.rows at %d+%d, v.base at %d: want v.rows 48 bytes into v.base", rows.Offset, rows.Size, base.Offset)
	}
	for _, name := range []string{"v.window", "v.transposed", "v.expanded"} {
		if ti := info(name); ti.Offset != -1 || !strings.HasSuffix(ti.File, "model.bin") {
			t.Errorf("%s: Offset %d in %s, want -1 (materialised)", name, ti.Offset, ti.File)
		}
	}
	b, _ := c.Raw("v.base")
	r, _ := c.Raw("v.rows")
	if &b[48] != &r[0] {
		t.Error("v.rows does not alias v.base's bytes")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Raw("v.window"); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Raw after Close: %v", err)
	}
}

// TestPyTorchGather checks the materialisation of strided views against
// index arithmetic done here, for 3-D views with and without a last axis
// of stride 1, an offset and a stride 0, and for the old _rebuild_tensor.
func TestPyTorchGather(t *testing.T) {
	for _, tc := range []struct {
		offset        int32
		shape, stride []int32
	}{
		{0, []int32{2, 2, 3}, []int32{1, 6, 2}},
		{1, []int32{2, 2, 2}, []int32{6, 3, 1}},
		{3, []int32{2, 3, 2}, []int32{0, 1, 4}},
		{0, []int32{4, 3}, []int32{1, 4}},
		{5, []int32{}, []int32{}},
	} {
		spec := tensorSpec{name: "x", storageType: "FloatStorage", key: "0", numel: 12, offset: tc.offset, shape: tc.shape, stride: tc.stride}
		path := writeTemp(t, "x.bin", torchZip(t,
			zipRecord{name: "a/data.pkl", data: stateDict(spec)},
			zipRecord{name: "a/data/0", data: f32Bytes(12)}))
		c, err := Open(path)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		got, err := c.Float32s("x")
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		var want []float32
		var walk func(d int, elem int32)
		walk = func(d int, elem int32) {
			if d == len(tc.shape) {
				want = append(want, float32(elem))
				return
			}
			for i := range tc.shape[d] {
				walk(d+1, elem+i*tc.stride[d])
			}
		}
		walk(0, tc.offset)
		if len(got) != len(want) {
			t.Fatalf("%+v: %d values, want %d", tc, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%+v: got %v, want %v", tc, got, want)
			}
		}
	}
}

// TestPyTorchRebuilders reads the tensor forms torch.save writes besides
// the usual _rebuild_tensor_v2: the old four-argument _rebuild_tensor, an
// nn.Parameter, and the optional empty metadata argument.
func TestPyTorchRebuilders(t *testing.T) {
	storage := func(p *pickleBuilder) *pickleBuilder {
		return p.op(opMark).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(6).op(opTuple, opBinPersID)
	}
	p := &pickleBuilder{}
	p.op(opProto, 2, opEmptyDict, opMark)
	p.str("v1").global("torch._utils", "_rebuild_tensor").op(opMark)
	storage(p).int(0).ints(2, 3).ints(3, 1).op(opTuple, opReduce)
	p.str("param").global("torch._utils", "_rebuild_parameter").op(opMark)
	p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	storage(p).int(2).ints(4).ints(1).op(opNewTrue, opEmptyDict, opTuple, opReduce)
	p.op(opNewTrue, opEmptyDict, opTuple, opReduce)
	p.str("meta").global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	storage(p).int(5).ints().ints().op(opNewFalse, opEmptyDict, opEmptyDict, opTuple, opReduce)
	p.op(opSetItems, opStop)
	path := writeTemp(t, "r.bin", torchZip(t,
		zipRecord{name: "r/data.pkl", data: p.b},
		zipRecord{name: "r/data/0", data: f32Bytes(6)}))
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, want := range map[string][]float32{"v1": {0, 1, 2, 3, 4, 5}, "param": {2, 3, 4, 5}, "meta": {5}} {
		got, err := c.Float32s(name)
		if err != nil || !slicesEqual(got, want) {
			t.Errorf("%s = %v, %v; want %v", name, got, err, want)
		}
	}
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestUnpickleScalars checks the integer and float opcodes' decoding.
func TestUnpickleScalars(t *testing.T) {
	p := &pickleBuilder{}
	p.op(opProto, 2, opMark)
	p.int(-7)
	p.op(opBinInt1, 0xff, opBinInt2, 0xff, 0xff)
	p.op(opLong1, 0, opLong1, 1, 0xff, opLong1, 2, 0xff, 0x7f, opLong1, 3, 0, 0, 0x80)
	p.op(opLong1, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)
	p.op(opBinFloat).op(binary.BigEndian.AppendUint64(nil, math.Float64bits(-2.5))...)
	p.op(opNone, opNewTrue, opShortBinUnicode, 2, 'h', 'i')
	p.op(opTuple, opStop)
	v, err := unpickle(p.b, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := pyTuple{int64(-7), int64(255), int64(65535), int64(0), int64(-1), int64(32767), int64(-(1 << 23)),
		int64(math.MaxInt64), -2.5, nil, true, "hi"}
	got, ok := v.(pyTuple)
	if !ok || len(got) != len(want) {
		t.Fatalf("got %#v", v)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("item %d = %#v, want %#v", i, got[i], want[i])
		}
	}
}

func TestPyTorchDirectory(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), PyTorchFileName) {
		t.Errorf("empty directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, PyTorchFileName), readTestdata(t, "model.bin"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkPyTorch(t, c, readExpectation(t, filepath.Join("testdata", "pytorch", "model.json")))
	if c.Path() != filepath.Join(dir, PyTorchFileName) {
		t.Errorf("opened %s", c.Path())
	}
	c.Close()
	// safetensors wins over pytorch_model.bin.
	if err := os.WriteFile(filepath.Join(dir, SingleFileName), fixture(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err = Open(dir); err != nil || c.Path() != filepath.Join(dir, SingleFileName) {
		t.Fatalf("with both formats: %v", err)
	}
	c.Close()
}

func TestPyTorchSharded(t *testing.T) {
	dir := filepath.Join("testdata", "pytorch", "sharded")
	want := readExpectation(t, filepath.Join(dir, "expected.json"))
	for _, path := range []string{dir, filepath.Join(dir, PyTorchIndexFileName)} {
		c, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Path() != filepath.Join(dir, PyTorchIndexFileName) {
			t.Errorf("opened %s", c.Path())
		}
		checkExpectation(t, c, want)
		if ti, _ := c.Lookup("layer.1.weight"); ti.Offset != -1 || !strings.HasSuffix(ti.File, "00002-of-00002.bin") {
			t.Errorf("layer.1.weight: %+v", ti)
		}
		c.Close()
	}
}

func TestPyTorchLoadInto(t *testing.T) {
	c, err := Open(filepath.Join("testdata", "pytorch", "model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := &hostBackend{}
	params := []api.Parameter{
		{Name: "v.transposed", Value: b.Alloc(api.F32, 6, 4)},
		{Name: "b.f16", Value: b.Alloc(api.F32, 4)},
		{Name: "c.bf16", Value: b.Alloc(api.F16, 2, 3, 2)},
		{Name: "f.f64", Value: b.Alloc(api.F32, 2, 2)},
	}
	if err := c.LoadInto(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	want := map[string][]float32{}
	for _, e := range readExpectation(t, filepath.Join("testdata", "pytorch", "model.json")).Tensors {
		for _, v := range e.Values {
			want[e.Name] = append(want[e.Name], float32(v))
		}
	}
	for _, p := range params {
		var got []float32
		if p.Value.DType() == api.F16 {
			h := p.Value.(*hostTensor)
			for i := 0; i < len(h.data); i += 2 {
				got = append(got, api.Float16ToFloat32(binary.LittleEndian.Uint16(h.data[i:])))
			}
		} else {
			got = hostFloat32s(p.Value)
		}
		if !slicesEqual(got, want[p.Name]) {
			t.Errorf("%s = %v, want %v", p.Name, got, want[p.Name])
		}
	}
	bad := []api.Parameter{{Name: "v.window", Value: b.Alloc(api.F32, 3, 2)}, {Name: "i.u8", Value: b.Alloc(api.F32, 4)}}
	if err := c.LoadInto(context.Background(), bad); !errors.Is(err, api.ErrShape) || !errors.Is(err, api.ErrDType) {
		t.Errorf("wrong shape and dtype: %v", err)
	}
}

// refusedCase is a file Open must refuse with an error of class want whose
// text contains text.
type refusedCase struct {
	name string
	data []byte
	want error
	text string
}

// refusedCases builds the malformed and hostile PyTorch files the reader
// must refuse, each a small change from a valid one.
func refusedCases(t testing.TB) []refusedCase {
	w := tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 6, shape: []int32{2, 3}, stride: []int32{3, 1}}
	with := func(f func(*tensorSpec)) tensorSpec {
		s := w
		f(&s)
		return s
	}
	file := func(pkl []byte, extra ...zipRecord) []byte {
		recs := []zipRecord{{name: "archive/data.pkl", data: pkl}, {name: "archive/byteorder", data: []byte("little")}}
		if len(extra) == 0 {
			extra = []zipRecord{{name: "archive/data/0", data: f32Bytes(6)}}
		}
		return torchZip(t, append(recs, extra...)...)
	}
	pk := func() *pickleBuilder { return (&pickleBuilder{}).op(opProto, 2) }
	metaTensor := pk().global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opMark).str("w")
	metaTensor.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	metaTensor.op(opMark).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(6).op(opTuple, opBinPersID)
	metaTensor.int(0).ints(6).ints(1).op(opNewFalse, opEmptyDict, opEmptyDict).str("neg_bit").op(opNewTrue, opSetItem)
	metaTensor.op(opTuple, opReduce, opSetItems, opStop)

	valid := file(stateDict(w))
	return []refusedCase{
		{"evil fixture", readTestdata(t, "evil.bin"), api.ErrUnsupported, "global os.system is not allowed"},
		{"stack global eval", file(pk().op(opShortBinUnicode, 8).raw("builtins").op(opShortBinUnicode, 4).raw("eval").
			op(opStackGlobal).str("1+1").op(opTuple1, opReduce, opStop).b), api.ErrUnsupported, "global builtins.eval is not allowed"},
		{"global in a storage id", file(stateDict(with(func(s *tensorSpec) { s.storageType = "ShortStorage" }))), api.ErrUnsupported, "torch.ShortStorage"},
		{"other torch global", file(pk().global("torch._utils", "_rebuild_parameter_with_state").op(opStop).b), api.ErrUnsupported, "torch._utils._rebuild_parameter_with_state"},
		{"global with newline junk", file(pk().global("os", "system\x00").op(opStop).b), api.ErrUnsupported, `"os.system\x00"`},
		{"storage type called", file(pk().global("torch", "FloatStorage").op(opEmptyTuple, opReduce, opStop).b), api.ErrUnsupported, "only valid in a persistent id"},
		{"string called", file(pk().str("os.system").op(opEmptyTuple, opReduce, opStop).b), api.ErrUnsupported, "REDUCE calls a str"},
		{"INST opcode", file(pk().op('i').raw("os\nsystem\n").op(opStop).b), api.ErrUnsupported, "opcode 0x69"},
		{"NEWOBJ opcode", file(pk().op(0x81, opStop).b), api.ErrUnsupported, "opcode 0x81"},
		{"OrderedDict with items", file(pk().global("collections", "OrderedDict").op(opEmptyList).op(opTuple1, opReduce, opStop).b), api.ErrUnsupported, "1 arguments"},
		{"tensor metadata", file(metaTensor.b), api.ErrUnsupported, "tensor metadata"},
		{"persistent id not a storage", file(pk().str("x").op(opBinPersID, opStop).b), api.ErrUnsupported, "persistent id"},
		{"compressed storage", file(stateDict(w), zipRecord{name: "archive/data/0", data: f32Bytes(6), compress: true}), api.ErrUnsupported, "compressed"},
		{"compressed pickle", torchZip(t, zipRecord{name: "archive/data.pkl", data: stateDict(w), compress: true}, zipRecord{name: "archive/data/0", data: f32Bytes(6)}), api.ErrUnsupported, "compressed"},
		{"storage size", file(stateDict(with(func(s *tensorSpec) { s.numel = 7 }))), api.ErrCorrupt, "do not fill"},
		{"missing storage", file(stateDict(with(func(s *tensorSpec) { s.key = "9" }))), api.ErrCorrupt, "no zip record archive/data/9"},
		{"view past storage", file(stateDict(with(func(s *tensorSpec) { s.shape = []int32{3, 3} }))), api.ErrCorrupt, "reaches past"},
		{"offset past storage", file(stateDict(with(func(s *tensorSpec) { s.offset = 1 }))), api.ErrCorrupt, "reaches past"},
		{"huge stride", file(stateDict(with(func(s *tensorSpec) { s.stride = []int32{1 << 30, 1} }))), api.ErrCorrupt, "reaches past"},
		{"negative stride", file(stateDict(with(func(s *tensorSpec) { s.stride = []int32{-3, 1} }))), api.ErrCorrupt, "negative"},
		{"negative offset", file(stateDict(with(func(s *tensorSpec) { s.offset = -1 }))), api.ErrCorrupt, "negative"},
		{"huge shape", file(stateDict(with(func(s *tensorSpec) { s.shape, s.stride = []int32{1 << 30, 1 << 30, 1 << 30}, []int32{0, 0, 0} }))), api.ErrCorrupt, "element count overflows"},
		{"rank mismatch", file(stateDict(with(func(s *tensorSpec) { s.stride = []int32{1} }))), api.ErrCorrupt, "2 sizes but 1 strides"},
		{"expanded beyond the file", file(stateDict(with(func(s *tensorSpec) { s.shape, s.stride = []int32{1000, 1000}, []int32{0, 0} }))), api.ErrUnsupported, "more memory than the whole file"},
		{"big endian", torchZip(t, zipRecord{name: "archive/data.pkl", data: stateDict(w)}, zipRecord{name: "archive/byteorder", data: []byte("big")}), api.ErrUnsupported, `byte order "big"`},
		{"no data.pkl", torchZip(t, zipRecord{name: "archive/data/0", data: f32Bytes(6)}), api.ErrCorrupt, "no archive/data.pkl"},
		{"not in a directory", torchZip(t, zipRecord{name: "data.pkl", data: stateDict(w)}), api.ErrCorrupt, "not inside a directory"},
		{"duplicate zip entry", file(stateDict(w), zipRecord{name: "archive/data/0", data: f32Bytes(6)}, zipRecord{name: "archive/data/0", data: f32Bytes(6)}), api.ErrCorrupt, "appears twice"},
		{"empty zip", torchZip(t), api.ErrCorrupt, "empty zip"},
		{"truncated zip", valid[:len(valid)-10], api.ErrCorrupt, "zip archive"},
		{"no STOP", file(stateDict(w)[:len(stateDict(w))-1]), api.ErrCorrupt, "without STOP"},
		{"empty pickle", file(nil), api.ErrCorrupt, "without STOP"},
		{"stack underflow", file(pk().op(opTuple2, opStop).b), api.ErrCorrupt, "stack underflow"},
		{"underflow below a mark", file(pk().op(opNone, opMark, opPop, opStop).b), api.ErrCorrupt, "stack underflow"},
		{"pop mark without mark", file(pk().op(opTuple, opStop).b), api.ErrCorrupt, "no MARK"},
		{"two values at STOP", file(pk().op(opNone, opNone, opStop).b), api.ErrCorrupt, "STOP with 2 values"},
		{"memo miss", file(pk().op(opLongBinGet, 1, 2, 3, 4, opStop).b), api.ErrCorrupt, "memo index 67305985"},
		{"protocol 6", file((&pickleBuilder{}).op(opProto, 6, opNone, opStop).b), api.ErrUnsupported, "protocol 6"},
		{"huge string", file(pk().op(opBinUnicode, 0xff, 0xff, 0xff, 0xff, 'x', opStop).b), api.ErrCorrupt, "runs past"},
		{"bad UTF-8", file(pk().op(opShortBinUnicode, 1, 0xff, opStop).b), api.ErrCorrupt, "UTF-8"},
		{"huge frame", file(pk().op(opFrame, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, opNone, opStop).b), api.ErrCorrupt, "frame"},
		{"integer of 9 bytes", file(pk().op(opLong1, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, opStop).b), api.ErrUnsupported, "9 bytes"},
		{"GLOBAL without newline", file(pk().op(opGlobal).raw("os").b), api.ErrCorrupt, "no newline"},
		{"unhashable key", file(pk().op(opEmptyDict, opEmptyTuple, opNone, opSetItem, opStop).b), api.ErrUnsupported, "dict key that is a tuple"},
		{"APPEND to a dict", file(pk().op(opEmptyDict, opNone, opAppend, opStop).b), api.ErrCorrupt, "not a list"},
		{"odd SETITEMS", file(pk().op(opEmptyDict, opMark, opNone, opSetItems, opStop).b), api.ErrCorrupt, "do not pair"},
		{"BUILD on a tensor", file(pk().tensor(w).op(opEmptyDict, opBuild, opStop).b), api.ErrUnsupported, "BUILD of a tensor"},
		{"top-level list", file(pk().op(opEmptyList, opStop).b), api.ErrUnsupported, "holds a list, not a state_dict"},
		{"self-referencing list", file(pk().op(opEmptyList, opBinPut, 0, opBinGet, 0, opAppend, opStop).b), api.ErrUnsupported, "holds a list"},
		{"non-tensor value", file(pk().op(opEmptyDict).str("epoch").int(3).op(opSetItem, opStop).b), api.ErrUnsupported, `tensor "epoch": the state_dict holds an int`},
		{"integer key", file(pk().op(opEmptyDict).int(3).tensor(w).op(opSetItem, opStop).b), api.ErrUnsupported, "key 3 is not a string"},
		{"duplicate key", file(stateDict(w, w)), api.ErrCorrupt, `key "w" appears twice`},
		{"legacy format", readTestdata(t, "legacy.bin"), api.ErrUnsupported, "legacy PyTorch format (not a zip archive"},
		{"legacy format, protocol 4", legacyPickle(4), api.ErrUnsupported, "legacy PyTorch format (not a zip archive"},
		{"legacy format, protocol 5", legacyPickle(5), api.ErrUnsupported, "re-save it with torch.save's default zip format, or convert it with a Python script"},
		{"plain pickle", stateDict(w), api.ErrUnsupported, "a Python pickle (protocol 2), neither safetensors nor a torch.save zip archive"},
	}
}

// legacyPickle returns the start of a file torch.save writes in the legacy
// format with pickle_protocol proto (4 or 5, which frame their opcodes):
// the pickle of torch's magic number, then that of the protocol version.
func legacyPickle(proto byte) []byte {
	p := (&pickleBuilder{}).op(opProto, proto, opFrame, byte(len(torchMagic)+1), 0, 0, 0, 0, 0, 0, 0)
	p.op(torchMagic...).op(opStop)
	p.op(opProto, proto).op(opBinInt2, 0xe9, 0x03, opStop) // 1001
	return p.b
}

// TestSafetensorsLikePickle opens a safetensors file whose header length,
// 640, starts it with the bytes of a protocol 2 pickle: the pickle checks
// must not refuse it.
func TestSafetensorsLikePickle(t *testing.T) {
	head := []byte(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`)
	head = append(head, bytes.Repeat([]byte{' '}, 0x280-len(head))...)
	data := binary.LittleEndian.AppendUint64(nil, uint64(len(head)))
	data = append(append(data, head...), f32Bytes(2)...)
	if data[0] != opProto || data[1] != 2 {
		t.Fatalf("the file starts % x", data[:2])
	}
	c, err := Open(writeTemp(t, "w.safetensors", data))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.Float32s("w"); err != nil || !slicesEqual(got, []float32{0, 1}) {
		t.Errorf("w = %v, %v", got, err)
	}
	// Corrupt, it is reported as safetensors, not as a pickle.
	_, err = Open(writeTemp(t, "bad.safetensors", data[:len(data)-1]))
	if !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), "safetensors") || strings.Contains(err.Error(), "pickle") {
		t.Errorf("truncated: %v", err)
	}
}

func TestPyTorchRefused(t *testing.T) {
	for _, tc := range refusedCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTemp(t, "x.bin", tc.data)
			c, err := Open(path)
			if err == nil {
				c.Close()
				t.Fatalf("opened; want an error containing %q", tc.text)
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), path) {
				t.Errorf("got %v\nwant %v naming %s and containing %q", err, tc.want, path, tc.text)

			}
		})
	}
}

// TestPyTorchValidBase makes sure the base of refusedCases is itself valid,
// so each case fails for the reason it names.
func TestPyTorchValidBase(t *testing.T) {
	w := tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 6, shape: []int32{2, 3}, stride: []int32{3, 1}}
	data := torchZip(t, zipRecord{name: "archive/data.pkl", data: stateDict(w)}, zipRecord{name: "archive/byteorder", data: []byte("little")},
		zipRecord{name: "archive/data/0", data: f32Bytes(6)})
	c, err := Open(writeTemp(t, "ok.bin", data))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.Float32s("w"); err != nil || !slicesEqual(got, []float32{0, 1, 2, 3, 4, 5}) {
		t.Errorf("w = %v, %v", got, err)
	}
}
