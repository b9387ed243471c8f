package checkpoint

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// variant is a malformed safetensors file and what Open must say about it.
type variant struct {
	name     string
	data     []byte
	sentinel error  // what the error wraps
	mention  string // a substring the error must contain ("" for none)
}

// splitFile returns the header text and data section of a safetensors file.
func splitFile(t testing.TB, data []byte) (string, []byte) {
	t.Helper()
	n := binary.LittleEndian.Uint64(data)
	return string(data[8 : 8+n]), data[8+n:]
}

// joinFile builds a safetensors file from a header text and a data section.
func joinFile(header string, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(out, header...), data...)
}

// withLength returns data with its header length field set to n.
func withLength(data []byte, n uint64) []byte {
	out := append([]byte(nil), data...)
	binary.LittleEndian.PutUint64(out, n)
	return out
}

// corruptVariants derives malformed files from the good fixture.
func corruptVariants(t testing.TB) []variant {
	good := fixture(t)
	header, data := splitFile(t, good)
	// edit replaces old, which must occur in the fixture's header, by new.
	edit := func(old, new string) []byte {
		if !strings.Contains(header, old) {
			t.Fatalf("the fixture header lacks %s; was it regenerated?", old)
		}
		return joinFile(strings.Replace(header, old, new, 1), data)
	}
	scalar := `"d.scalar":{"dtype":"F32","shape":[],"data_offsets":[76,80]}`
	corrupt, unsupported := api.ErrCorrupt, api.ErrUnsupported
	return []variant{
		{"empty file", nil, corrupt, "too short"},
		{"shorter than the length", good[:5], corrupt, "too short"},
		{"truncated data", good[:len(good)-3], corrupt, `"b.f16"`},
		{"truncated header", good[:100], corrupt, "past the end"},
		{"length beyond the file", withLength(good, uint64(len(good))), corrupt, "past the end"},
		{"length over the cap", withLength(good, 1<<40), corrupt, "limit"},
		{"length max uint64", withLength(good, math.MaxUint64), corrupt, "limit"},
		{"empty header", joinFile("", data), corrupt, "'{'"},
		{"not an object", joinFile("[1, 2]", data), corrupt, "'{'"},
		{"not JSON", joinFile("{this is not json}", data), corrupt, "header"},
		{"two objects", joinFile(strings.TrimRight(header, " ")+"{}", data), corrupt, "follows"},
		{"invalid UTF-8", edit(`"pt"`, "\"\xff\xfe\""), corrupt, "UTF-8"},
		{"overlapping offsets", edit(`[16,76]`, `[12,72]`), corrupt, "overlaps"},
		{"hole", edit(`"shape":[2],"data_offsets":[0,16]`, `"shape":[1],"data_offsets":[0,8]`), corrupt, "unused bytes"},
		{"trailing bytes", append(append([]byte(nil), good...), 0, 0, 0, 0), corrupt, "belong to no tensor"},
		{"unknown dtype", edit(`"dtype":"F16"`, `"dtype":"Q4"`), unsupported, `"b.f16"`},
		{"huge shape", edit(`"shape":[4]`, `"shape":[1099511627776,1099511627776]`), corrupt, "overflows"},
		{"huge byte size", edit(`"shape":[4]`, `"shape":[4611686018427387904]`), corrupt, "overflows"},
		{"shape beyond the data", edit(`"shape":[4]`, `"shape":[1099511627776]`), corrupt, "needs"},
		{"shape of the wrong size", edit(`"shape":[4]`, `"shape":[5]`), corrupt, "needs"},
		{"negative size", edit(`"shape":[4]`, `"shape":[-4]`), corrupt, "non-negative"},
		{"fractional size", edit(`"shape":[4]`, `"shape":[4.0]`), corrupt, "non-negative"},
		{"size beyond uint64", edit(`"shape":[4]`, `"shape":[18446744073709551616]`), corrupt, "non-negative"},
		{"size not a number", edit(`"shape":[4]`, `"shape":["4"]`), corrupt, "non-negative integers"},
		{"size beyond int", edit(`"shape":[4]`, `"shape":[9223372036854775808]`), corrupt, "too large"},
		{"null shape", edit(`"shape":[4]`, `"shape":null`), corrupt, "null"},
		{"shape not an array", edit(`"shape":[4]`, `"shape":{"0":4}`), corrupt, "non-negative integers"},
		{"offsets out of range", edit(`[104,112]`, `[104,1000]`), corrupt, "past the"},
		{"begin after end", edit(`[104,112]`, `[112,104]`), corrupt, "begin after end"},
		{"three offsets", edit(`[104,112]`, `[104,112,120]`), corrupt, "[begin, end]"},
		{"duplicate tensor", edit(scalar, scalar+","+scalar), corrupt, `"d.scalar" twice`},
		{"duplicate entry key", edit(`"dtype":"F16"`, `"dtype":"F16","dtype":"F16"`), corrupt, `"dtype" twice`},
		{"duplicate metadata key", edit(`{"format":"pt"}`, `{"format":"pt","format":"np"}`), corrupt, `"format" twice`},
		{"metadata value not a string", edit(`{"format":"pt"}`, `{"format":1}`), corrupt, "not a string"},
		{"metadata not an object", edit(`{"format":"pt"}`, `["pt"]`), corrupt, "not an object"},
		{"entry not an object", edit(scalar, `"d.scalar":[76,80]`), corrupt, `"d.scalar"`},
		{"entry without dtype", edit(scalar, `"d.scalar":{"shape":[],"data_offsets":[76,80]}`), corrupt, "no dtype"},
		{"entry without shape", edit(scalar, `"d.scalar":{"dtype":"F32","data_offsets":[76,80]}`), corrupt, "no shape"},
		{"entry without offsets", edit(scalar, `"d.scalar":{"dtype":"F32","shape":[]}`), corrupt, "no data_offsets"},
		{"dtype not a string", edit(`"dtype":"F16"`, `"dtype":16`), corrupt, "not a string"},
		{"trailing comma", edit(`[104,112]}}`, `[104,112]},}`), corrupt, "header"},
	}
}

func TestCorruptFiles(t *testing.T) {
	for _, v := range corruptVariants(t) {
		t.Run(v.name, func(t *testing.T) {
			path := writeTemp(t, "bad.safetensors", v.data)
			c, err := Open(path)
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, v.sentinel) {
				t.Errorf("error %v does not wrap %v", err, v.sentinel)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), v.mention) {
				t.Errorf("error %q should name the file and say %q", err, v.mention)
			}
		})
	}
}

// TestAcceptedVariants checks inputs that look odd but are valid.
func TestAcceptedVariants(t *testing.T) {
	header, data := splitFile(t, fixture(t))
	for name, h := range map[string]string{
		"null metadata":  strings.Replace(header, `{"format":"pt"}`, "null", 1),
		"unknown field":  strings.Replace(header, `"dtype":"F16"`, `"dtype":"F16","note":{"x":[1,2]}`, 1),
		"escaped name":   strings.Replace(header, `"b.f16"`, `"b\u002ef16"`, 1),
		"no padding":     strings.TrimRight(header, " "),
		"newline inside": strings.Replace(header, `,"a.f32"`, ",\n\"a.f32\"", 1),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Open(writeTemp(t, "ok.safetensors", joinFile(h, data)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if v, err := c.Float32s("b.f16"); err != nil || v[0] != 65504 {
				t.Errorf("b.f16 = %v, %v", v, err)
			}
		})
	}
}

// shardedCopy copies testdata/sharded into a temporary directory, with the
// index replaced by index when it is not empty, and returns the directory.
func shardedCopy(t *testing.T, index string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(filepath.Join("testdata", "sharded"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("testdata", "sharded", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == IndexFileName && index != "" {
			data = []byte(index)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCorruptIndex(t *testing.T) {
	const s1, s2 = `"model-00001-of-00002.safetensors"`, `"model-00002-of-00002.safetensors"`
	full := `"embed.weight":` + s1 + `,"layers.0.norm.weight":` + s1 + `,"layers.1.norm.weight":` + s2 + `,"lm_head.weight":` + s2
	for _, tc := range []struct {
		name, index string
		sentinel    error
		mention     string
	}{
		{"not JSON", `{"weight_map":`, api.ErrCorrupt, "index"},
		{"no weight map", `{"metadata":{"total_size":60}}`, api.ErrCorrupt, "no weight_map"},
		{"weight map not an object", `{"weight_map":[1]}`, api.ErrCorrupt, "not an object"},
		{"duplicate key", `{"weight_map":{` + full + `,"embed.weight":` + s2 + `}}`, api.ErrCorrupt, `"embed.weight" twice`},
		{"duplicate weight map", `{"weight_map":{` + full + `},"weight_map":{}}`, api.ErrCorrupt, `"weight_map" twice`},
		{"missing shard", `{"weight_map":{` + full + `,"extra":"model-00003-of-00003.safetensors"}}`, api.ErrNotFound, "model-00003"},
		{"shard outside", `{"weight_map":{` + full + `,"extra":"../model.safetensors"}}`, api.ErrCorrupt, "../model.safetensors"},
		{"absolute shard", `{"weight_map":{` + full + `,"extra":"/etc/passwd"}}`, api.ErrCorrupt, "/etc/passwd"},
		{"tensor not in its shard", `{"weight_map":{` + full + `,"ghost":` + s1 + `}}`, api.ErrCorrupt, `"ghost"`},
		{"unlisted tensor", `{"weight_map":{"embed.weight":` + s1 + `}}`, api.ErrCorrupt, `"layers.0.norm.weight"`},
		{"tensor in another shard", `{"weight_map":{` + strings.Replace(full, `"lm_head.weight":`+s2, `"lm_head.weight":`+s1, 1) + `}}`, api.ErrCorrupt, `"lm_head.weight"`},
		{"trailing data", `{"weight_map":{` + full + `}} x`, api.ErrCorrupt, "after the index object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(shardedCopy(t, tc.index))
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %v: want %v mentioning %s", err, tc.sentinel, tc.mention)
			}
		})
	}
	// An index larger than its 64 MiB cap (sparse here) is refused unread.
	dir := shardedCopy(t, "")
	index := filepath.Join(dir, IndexFileName)
	if err := os.Truncate(index, maxIndexSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, api.ErrOutOfRange) || !strings.Contains(err.Error(), index) || !strings.Contains(err.Error(), "64 MiB cap") {
		t.Errorf("index over 64 MiB: %v", err)
	}
	// So is a device that never ends.
	if _, err := os.Stat("/dev/zero"); err == nil {
		link := filepath.Join(t.TempDir(), "zero.index.json")
		if err := os.Symlink("/dev/zero", link); err == nil {
			if _, err := Open(link); !errors.Is(err, api.ErrOutOfRange) {
				t.Errorf("index linked to /dev/zero: %v", err)
			}
		}
	}
	// A corrupt shard is reported with the shard's name.
	dir = shardedCopy(t, "")
	shard := filepath.Join(dir, "model-00002-of-00002.safetensors")
	if err := os.WriteFile(shard, []byte("garbage!garbage!"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), shard) {
		t.Errorf("corrupt shard: %v", err)
	}
}
