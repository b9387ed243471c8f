package data

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

func TestTokensRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		vocab int
		width int
		toks  []int32
	}{
		{1000, 2, []int32{0, 1, 999, 500, 7}},
		{1 << 16, 2, []int32{65535, 0, 256}},
		{1<<16 + 1, 4, []int32{65536, 0, 1}},
		{200_000, 4, []int32{199_999, 70_000, 3}},
		{50, 2, nil},
	} {
		path := filepath.Join(dir, "t.tokens")
		if err := WriteTokens(path, tc.vocab, tc.toks); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(path)
		if want := int64(TokensHeaderSize + tc.width*len(tc.toks)); st.Size() != want {
			t.Errorf("vocab %d: file of %d bytes, want %d", tc.vocab, st.Size(), want)
		}
		tk, err := OpenTokens(path)
		if err != nil {
			t.Fatal(err)
		}
		if tk.Len() != int64(len(tc.toks)) || tk.Width() != tc.width {
			t.Errorf("vocab %d: %d tokens of width %d, want %d of %d", tc.vocab, tk.Len(), tk.Width(), len(tc.toks), tc.width)
		}
		got := make([]int32, len(tc.toks))
		if err := tk.Read(0, got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.toks) && len(tc.toks) > 0 {
			t.Errorf("vocab %d: read %v, want %v", tc.vocab, got, tc.toks)
		}
		if len(tc.toks) > 2 {
			part := make([]int32, 2)
			if err := tk.Read(1, part); err != nil || !slices.Equal(part, tc.toks[1:3]) {
				t.Errorf("vocab %d: Read(1) = %v, %v", tc.vocab, part, err)
			}
		}
		for _, r := range [][2]int64{{-1, 1}, {0, int64(len(tc.toks)) + 1}, {int64(len(tc.toks)), 1}} {
			if err := tk.Read(r[0], make([]int32, r[1])); !errors.Is(err, api.ErrOutOfRange) {
				t.Errorf("vocab %d: Read(%d, %d tokens): error %v, want ErrOutOfRange", tc.vocab, r[0], r[1], err)
			}
		}
		tk.Close()
	}
	if err := WriteTokens(filepath.Join(dir, "bad.tokens"), 10, []int32{3, 10}); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("token outside the vocabulary: error %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.tokens")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused write left a file: %v", err)
	}
}

// TestTokensLongRead reads across the chunks Read decodes at a time.
func TestTokensLongRead(t *testing.T) {
	toks := make([]int32, 3*readChunk+17)
	for i := range toks {
		toks[i] = int32(i * 7 % 1000)
	}
	path := filepath.Join(t.TempDir(), "long.tokens")
	if err := WriteTokens(path, 1000, toks); err != nil {
		t.Fatal(err)
	}
	tk, err := OpenTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	got := make([]int32, len(toks)-5)
	if err := tk.Read(5, got); err != nil || !slices.Equal(got, toks[5:]) {
		t.Errorf("long read differs (%v)", err)
	}
}

func header(magic string, version, width uint32, count uint64) []byte {
	h := make([]byte, TokensHeaderSize)
	copy(h, magic)
	binary.LittleEndian.PutUint32(h[8:], version)
	binary.LittleEndian.PutUint32(h[12:], width)
	binary.LittleEndian.PutUint64(h[16:], count)
	return h
}

func TestTokensCorrupt(t *testing.T) {
	dir := t.TempDir()
	good := append(header(tokensMagic, 1, 2, 3), 1, 0, 2, 0, 3, 0)
	for _, tc := range []struct {
		name string
		data []byte
		is   error
	}{
		{"empty", nil, api.ErrCorrupt},
		{"truncated header", good[:TokensHeaderSize-1], api.ErrCorrupt},
		{"truncated tokens", good[:len(good)-1], api.ErrCorrupt},
		{"trailing bytes", append(slices.Clone(good), 0), api.ErrCorrupt},
		{"count too big", append(header(tokensMagic, 1, 2, 4), 1, 0, 2, 0, 3, 0), api.ErrCorrupt},
		{"count huge", append(header(tokensMagic, 1, 4, 1<<62), 1, 0, 0, 0), api.ErrCorrupt},
		{"count wraps", append(header(tokensMagic, 1, 4, 1<<62+1), 1, 0, 0, 0), api.ErrCorrupt},
		{"magic", append(header("DSSMTOKX", 1, 2, 3), 1, 0, 2, 0, 3, 0), api.ErrCorrupt},
		{"width 3", append(header(tokensMagic, 1, 3, 2), 1, 0, 0, 2, 0, 0), api.ErrCorrupt},
		{"width 0", header(tokensMagic, 1, 0, 0), api.ErrCorrupt},
		{"version", append(header(tokensMagic, 2, 2, 3), 1, 0, 2, 0, 3, 0), api.ErrUnsupported},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if tk, err := OpenTokens(path); !errors.Is(err, tc.is) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.is)
			if tk != nil {
				tk.Close()
			}
		}
	}
	if _, err := OpenTokens(filepath.Join(dir, "missing")); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("missing file: error %v", err)
	}
	// A 4-byte token over the int32 range is refused when read.
	path := filepath.Join(dir, "big")
	os.WriteFile(path, append(header(tokensMagic, 1, 4, 1), 0, 0, 0, 0x80), 0o644)
	tk, err := OpenTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if err := tk.Read(0, make([]int32, 1)); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("token 2^31: error %v", err)
	}
}

// FuzzOpenTokens checks that OpenTokens accepts exactly the files whose
// header matches their size, and that every token of an accepted file can
// be read.
func FuzzOpenTokens(f *testing.F) {
	f.Add(append(header(tokensMagic, 1, 2, 3), 1, 0, 2, 0, 3, 0))
	f.Add(append(header(tokensMagic, 1, 4, 1), 1, 0, 0, 0))
	f.Add(header(tokensMagic, 1, 2, 0))
	f.Add(append(header(tokensMagic, 1, 2, 1<<63), 1, 0))
	f.Add([]byte("DSSMTOKS"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.tokens")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tk, err := OpenTokens(path)
		if err != nil {
			if !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrUnsupported) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		defer tk.Close()
		if int64(len(data)) != TokensHeaderSize+tk.Len()*int64(tk.Width()) {
			t.Fatalf("accepted %d bytes holding %d tokens of %d bytes", len(data), tk.Len(), tk.Width())
		}
		got := make([]int32, tk.Len())
		err = tk.Read(0, got)
		if err != nil && !errors.Is(err, api.ErrCorrupt) {
			t.Fatalf("read: %v", err)
		}
		for i, v := range got {
			if err == nil && v < 0 {
				t.Fatalf("token %d is %d", i, v)
			}
		}
	})
}
