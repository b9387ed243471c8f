package data

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// fuzzReader checks that a reader of untrusted bytes fails only with
// classified errors and yields only non-empty UTF-8 documents.
func fuzzReader(f *testing.F, ext string, seeds ...string) {
	for _, s := range seeds {
		b, err := os.ReadFile(filepath.Join("testdata", s))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := readBytes(ext, data, "text")
		if err != nil && !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrNotFound) && !errors.Is(err, api.ErrUnsupported) {
			t.Fatalf("unclassified error %v", err)
		}
		for _, d := range docs {
			if d == "" || !utf8.ValidString(d) {
				t.Fatalf("document %q", d)
			}
		}
	})
}

// FuzzArrow feeds mutated Arrow IPC streams and files to the Arrow reader.
func FuzzArrow(f *testing.F) {
	fuzzReader(f, ".arrow", "hf_disk/data-00000-of-00001.arrow", "ipc_file.arrow")
}

// FuzzParquet feeds mutated Parquet files to the Parquet reader.
func FuzzParquet(f *testing.F) {
	fuzzReader(f, ".parquet", "parquet/train.parquet")
}
