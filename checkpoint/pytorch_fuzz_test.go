package checkpoint

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/densessm/densessm/api"
)

// allocLimit bounds what opening an input of n bytes may allocate: the zip
// directory and the pickle machine cost a few dozen bytes per input byte,
// and materialised views at most n bytes in all.
func allocLimit(n int) uint64 { return 1<<20 + 256*uint64(n) }

// checkOpened reads every tensor of an open checkpoint and checks that the
// sizes agree with the descriptions.
func checkOpened(t *testing.T, c *Checkpoint) {
	for _, info := range c.Tensors() {
		raw, err := c.Raw(info.Name)
		if err != nil || int64(len(raw)) != info.Size || info.Size != int64(info.Shape.NumElements()*info.DType.Size()) {
			t.Fatalf("%q: %d raw bytes, Size %d, %s%v: %v", info.Name, len(raw), info.Size, info.DType, info.Shape, err)
		}
		vals, err := c.Float32s(info.Name)
		if decodable(info.DType) != (err == nil) || (err == nil && len(vals) != info.Shape.NumElements()) {
			t.Fatalf("%q: Float32s of %s%v gives %d values, %v", info.Name, info.DType, info.Shape, len(vals), err)
		}
	}
}

// checkClass fails unless err says the input is corrupt or unsupported.
func checkClass(t *testing.T, err error) {
	if !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrUnsupported) {
		t.Fatalf("error of an unexpected class: %v", err)
	}
}

// FuzzOpenPyTorch opens arbitrary bytes as a checkpoint file, seeded with
// PyTorch zip files (valid, hostile and malformed), and reads every tensor.
// It must never panic, must fail only with ErrCorrupt or ErrUnsupported,
// and Open must not allocate more than allocLimit: a forged size, count or
// view must not make it allocate what it claims. (Refused globals cannot
// "run": the unpickler has no way to call anything but its own Go code.)
//
//	go test ./checkpoint -run '^$' -fuzz FuzzOpenPyTorch -fuzztime 60s
func FuzzOpenPyTorch(f *testing.F) {
	for _, name := range []string{"model.bin", "proto4.bin", "evil.bin", "legacy.bin", filepath.Join("sharded", "pytorch_model-00002-of-00002.bin")} {
		f.Add(readTestdata(f, name))
	}
	for _, c := range refusedCases(f) {
		f.Add(c.data)
	}
	write := reusableFile(f, "fuzz.bin")
	f.Fuzz(func(t *testing.T, data []byte) {
		path := write(t, data)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err := Open(path)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > allocLimit(len(data)) {
			t.Fatalf("Open allocated %d bytes for a %d-byte input", alloc, len(data))
		}
		if err != nil {
			checkClass(t, err)
			return
		}
		defer c.Close()
		checkOpened(t, c)
	})
}

// FuzzPyTorchPickle runs arbitrary bytes as the data.pkl of model.bin, whose
// storage records stay in place, so that mutations exercise the unpickler
// and the view checks rather than the zip layer. Same properties as
// FuzzOpenPyTorch.
//
//	go test ./checkpoint -run '^$' -fuzz FuzzPyTorchPickle -fuzztime 60s
func FuzzPyTorchPickle(f *testing.F) {
	model := readTestdata(f, "model.bin")
	zr, err := zip.NewReader(bytes.NewReader(model), int64(len(model)))
	if err != nil {
		f.Fatal(err)
	}
	var storages []zipRecord
	for _, zf := range zr.File {
		if filepath.Base(zf.Name) == "data.pkl" {
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			f.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			f.Fatal(err)
		}
		storages = append(storages, zipRecord{name: zf.Name, data: b})
	}
	for _, name := range []string{"model.bin", "proto4.bin", "evil.bin"} {
		f.Add(dataPickle(f, readTestdata(f, name)))
	}
	w := tensorSpec{name: "w", storageType: "FloatStorage", key: "0", numel: 15, shape: []int32{5, 3}, stride: []int32{1, 5}}
	f.Add(stateDict(w))
	f.Fuzz(func(t *testing.T, pkl []byte) {
		data := torchZip(t, append([]zipRecord{{name: "model/data.pkl", data: pkl}}, storages...)...)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		h, copies, err := parseFile("fuzz.bin", data)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > allocLimit(len(data)) {
			t.Fatalf("parse allocated %d bytes for a %d-byte file", alloc, len(data))
		}
		if err != nil {
			checkClass(t, err)
			return
		}
		c := newCheckpoint("fuzz.bin", []*file{{path: "fuzz.bin", data: data, header: h, copies: copies}})
		checkOpened(t, c)
	})
}
