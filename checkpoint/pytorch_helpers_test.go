package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// pickleBuilder assembles pickle opcodes by hand, so that tests can build
// both the files torch.save writes and ones it never would.
type pickleBuilder struct{ b []byte }

// op appends raw opcode bytes.
func (p *pickleBuilder) op(ops ...byte) *pickleBuilder {
	p.b = append(p.b, ops...)
	return p
}

// raw appends the bytes of s.
func (p *pickleBuilder) raw(s string) *pickleBuilder {
	p.b = append(p.b, s...)
	return p
}

// str appends BINUNICODE s.
func (p *pickleBuilder) str(s string) *pickleBuilder {
	p.b = append(p.b, opBinUnicode)
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
	return p
}

// int appends BININT n.
func (p *pickleBuilder) int(n int32) *pickleBuilder {
	p.b = append(p.b, opBinInt)
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(n))
	return p
}

// global appends GLOBAL module.name.
func (p *pickleBuilder) global(module, name string) *pickleBuilder {
	p.b = append(p.b, opGlobal)
	p.b = append(p.b, module+"\n"+name+"\n"...)
	return p
}

// ints appends a tuple of integers.
func (p *pickleBuilder) ints(v ...int32) *pickleBuilder {
	p.op(opMark)
	for _, n := range v {
		p.int(n)
	}
	return p.op(opTuple)
}

// tensorSpec is one tensor of a hand-built state_dict pickle.
type tensorSpec struct {
	name, storageType, key string
	numel, offset          int32
	shape, stride          []int32
}

// tensor appends the REDUCE of _rebuild_tensor_v2 that torch.save writes
// for t, leaving the tensor on the stack.
func (p *pickleBuilder) tensor(t tensorSpec) *pickleBuilder {
	p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	p.op(opMark).str("storage").global("torch", t.storageType).str(t.key).str("cpu").int(t.numel).op(opTuple, opBinPersID)
	p.int(t.offset).ints(t.shape...).ints(t.stride...).op(opNewFalse)
	p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
	return p.op(opTuple, opReduce)
}

// stateDict returns the pickle of an OrderedDict of tensors, as torch.save
// writes it (protocol 2).
func stateDict(tensors ...tensorSpec) []byte {
	p := &pickleBuilder{}
	p.op(opProto, 2).global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opMark)
	for _, t := range tensors {
		p.str(t.name).tensor(t)
	}
	return p.op(opSetItems, opStop).b
}

// zipRecord is one entry of a hand-built zip archive.
type zipRecord struct {
	name     string
	data     []byte
	compress bool
}

// torchZip lays records out as a zip archive, stored uncompressed unless a
// record asks otherwise.
func torchZip(t testing.TB, records ...zipRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, r := range records {
		method := zip.Store
		if r.compress {
			method = zip.Deflate
		}
		f, err := w.CreateHeader(&zip.FileHeader{Name: r.name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(r.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// f32Bytes returns n little-endian float32 values 0, 1, 2, ...
func f32Bytes(n int) []byte {
	out := make([]byte, 0, 4*n)
	for i := range n {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(i)))
	}
	return out
}

// readTestdata reads a file under testdata/pytorch.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "pytorch", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// dataPickle returns the data.pkl record of a PyTorch zip file.
func dataPickle(t testing.TB, file []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if filepath.Base(f.Name) == "data.pkl" {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(rc); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}
	}
	t.Fatal("no data.pkl")
	return nil
}
