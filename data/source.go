package data

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/densessm/densessm/api"
)

// DefaultField is the JSONL field, Parquet column or Arrow column that
// holds the text when SourceOptions.Field is empty.
const DefaultField = "text"

// SourceOptions says where the text of structured files is and which files
// a folder walk takes.
type SourceOptions struct {
	// Field is the JSONL field, Parquet column or Arrow column holding the
	// text; "" means DefaultField.
	Field string
	// Exts restricts folder walks and glob matches to files with these
	// extensions (".go" or "go", compared without regard to case). Empty
	// means every file: the structured formats by extension, and every
	// other file that is UTF-8 text (valid UTF-8, no NUL byte).
	Exts []string
}

// format is how a file's documents are read.
type format int

const (
	formatText format = iota
	formatJSONL
	formatParquet
	formatArrow
)

// String names the format in errors and the manifest.
func (f format) String() string {
	switch f {
	case formatJSONL:
		return "jsonl"
	case formatParquet:
		return "parquet"
	case formatArrow:
		return "arrow"
	default:
		return "text"
	}
}

// formatOf picks a file's format by its extension.
func formatOf(path string) format {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson":
		return formatJSONL
	case ".parquet":
		return formatParquet
	case ".arrow":
		return formatArrow
	default:
		return formatText
	}
}

// sourceFile is one file of a corpus.
type sourceFile struct {
	path   string
	size   int64
	mtime  time.Time
	format format
	// found: the file came from a folder walk or a glob rather than being
	// named. A found plain-text file that turns out not to be UTF-8 text
	// is skipped instead of failing the read.
	found bool
}

// Corpus is a list of source files whose documents can be read in a fixed
// order. It holds no text: Documents reads the files each time.
type Corpus struct {
	files []sourceFile
	field string
	total int64
}

// Open resolves each spec into files: a file is taken as named; a folder is
// walked recursively in lexical order; a spec that does not exist and holds
// a glob character (* ? [ or \) is a glob, where * ? and [...] match within
// one path element and a ** element matches any number of folders. Folder
// walks and globs leave out hidden names (starting with "."), files whose
// extension is not in o.Exts when it is set, and plain-text candidates
// whose first bytes are not UTF-8 text; a folder written by Hugging Face
// datasets' save_to_disk (a state.json listing "_data_files") contributes
// the data files it lists, in that order, and a DatasetDict folder (with
// dataset_dict.json) is refused: name one of its splits. A file reached
// twice is read once, at its first place.
//
// The format of each file is chosen by its extension: .jsonl and .ndjson
// are JSON lines, .parquet is Parquet, .arrow is Arrow IPC (the stream
// format that datasets writes, or the file format); anything else is plain
// text, one file being one document.
//
// Open checks that every file exists and can be read, and that each
// Parquet and Arrow file has the text column, before it returns. Errors
// name the spec and wrap api.ErrNotFound (no such file, no match, no file
// left), api.ErrConfig (a bad pattern, no specs, a DatasetDict folder),
// api.ErrCorrupt or api.ErrUnsupported (a file that cannot be read as its
// format).
func Open(specs []string, o SourceOptions) (*Corpus, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("open corpus: no files or folders given: %w", api.ErrConfig)
	}
	c := &Corpus{field: o.Field}
	if c.field == "" {
		c.field = DefaultField
	}
	exts := normalizeExts(o.Exts)
	seen := make(map[string]bool)
	for _, spec := range specs {
		cands, err := resolve(spec, exts)
		if err != nil {
			return nil, fmt.Errorf("open corpus: %w", err)
		}
		kept := 0
		for _, cand := range cands {
			f, ok, err := c.check(cand)
			if err != nil {
				if cand.path != spec {
					return nil, fmt.Errorf("open corpus: %s: %s: %w", spec, cand.path, err)
				}
				return nil, fmt.Errorf("open corpus: %s: %w", spec, err)
			}
			if !ok {
				continue
			}
			kept++
			key := f.path
			if abs, err := filepath.Abs(f.path); err == nil {
				key = abs
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			c.files = append(c.files, f)
			c.total += f.size
		}
		if kept == 0 {
			return nil, fmt.Errorf("open corpus: %s: no file to read there (%d candidates, none text or of a known format): %w", spec, len(cands), api.ErrNotFound)
		}
	}
	return c, nil
}

// Files returns the paths of the corpus's files, in reading order.
func (c *Corpus) Files() []string {
	out := make([]string, len(c.files))
	for i, f := range c.files {
		out[i] = f.path
	}
	return out
}

// Bytes returns the total size of the files, for progress reports.
func (c *Corpus) Bytes() int64 { return c.total }

// Field returns the field or column the structured files' text is read
// from.
func (c *Corpus) Field() string { return c.field }

// candidate is a file a spec resolved to.
type candidate struct {
	path  string
	found bool
}

// check stats cand and checks that it can be read as its format. ok is
// false for a found file that is left out (not text).
func (c *Corpus) check(cand candidate) (sourceFile, bool, error) {
	st, err := os.Stat(cand.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return sourceFile{}, false, fmt.Errorf("%w: %w", err, api.ErrNotFound)
		}
		return sourceFile{}, false, err
	}
	if !st.Mode().IsRegular() {
		return sourceFile{}, false, fmt.Errorf("not a regular file: %w", api.ErrUnsupported)
	}
	f := sourceFile{path: cand.path, size: st.Size(), mtime: st.ModTime(), format: formatOf(cand.path), found: cand.found}
	switch f.format {
	case formatText:
		text, err := sniffText(f.path)
		if err != nil {
			return sourceFile{}, false, err
		}
		if !text {
			if f.found {
				return sourceFile{}, false, nil
			}
			return sourceFile{}, false, fmt.Errorf("not UTF-8 text (give .jsonl, .parquet and .arrow files their extension): %w", api.ErrCorrupt)
		}
	case formatJSONL:
		fh, err := os.Open(f.path)
		if err != nil {
			return sourceFile{}, false, err
		}
		fh.Close()
	case formatParquet:
		if err := checkParquet(f.path, c.field); err != nil {
			return sourceFile{}, false, err
		}
	case formatArrow:
		if err := checkArrow(f.path, c.field); err != nil {
			return sourceFile{}, false, err
		}
	}
	return f, true, nil
}

// normalizeExts gives every extension a leading dot.
func normalizeExts(exts []string) []string {
	var out []string
	for _, e := range exts {
		if e == "" {
			continue
		}
		if !strings.HasPrefix(e, ".") {
			e = "." + e
		}
		out = append(out, e)
	}
	return out
}

// hasExt reports whether name ends in one of exts (any when exts is empty).
func hasExt(name string, exts []string) bool {
	if len(exts) == 0 {
		return true
	}
	ext := filepath.Ext(name)
	for _, e := range exts {
		if strings.EqualFold(ext, e) {
			return true
		}
	}
	return false
}

// hidden reports whether a path element is a hidden name.
func hidden(name string) bool { return strings.HasPrefix(name, ".") && name != "." && name != ".." }
