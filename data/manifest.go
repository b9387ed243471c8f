package data

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/internal/readcap"
)

// manifestVersion is the version of the manifest and of the build rules
// it records.
const manifestVersion = 1

// maxManifest caps the size of a manifest UpToDate reads.
const maxManifest = 256 << 20

// manifest records what a build read and how, and what it wrote.
type manifest struct {
	Version       int            `json:"version"`
	Files         []manifestFile `json:"files"`
	Field         string         `json:"field"`
	TokenizerHash string         `json:"tokenizer_hash"`
	VocabSize     int            `json:"vocab_size"`
	TokenWidth    int            `json:"token_width"`
	Separator     int32          `json:"separator"`
	ValFraction   float64        `json:"val_fraction"`
	Split         string         `json:"split"`
	Stats         BuildStats     `json:"stats"`
}

// manifestFile is one source file as the build saw it.
type manifestFile struct {
	Path   string    `json:"path"`
	Format string    `json:"format"`
	Size   int64     `json:"size"`
	MTime  time.Time `json:"mtime"`
}

// newManifest describes a build of c with o.
func newManifest(c *Corpus, o BuildOptions, width int, stats BuildStats) manifest {
	m := manifest{
		Version:       manifestVersion,
		Field:         c.field,
		TokenizerHash: o.TokenizerHash,
		VocabSize:     o.Tokenizer.VocabSize(),
		TokenWidth:    width,
		Separator:     o.Separator,
		ValFraction:   o.ValFraction,
		Split:         splitRule,
		Stats:         stats,
	}
	for _, f := range c.files {
		p := f.path
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		m.Files = append(m.Files, manifestFile{Path: p, Format: f.format.String(), Size: f.size, MTime: f.mtime.UTC()})
	}
	return m
}

// sameBuild reports whether two manifests describe the same inputs and
// options (their stats aside).
func (m manifest) sameBuild(o manifest) bool {
	if m.Version != o.Version || m.Field != o.Field || m.TokenizerHash != o.TokenizerHash ||
		m.VocabSize != o.VocabSize || m.TokenWidth != o.TokenWidth || m.Separator != o.Separator ||
		m.ValFraction != o.ValFraction || m.Split != o.Split || len(m.Files) != len(o.Files) {
		return false
	}
	for i, f := range m.Files {
		g := o.Files[i]
		if f.Path != g.Path || f.Format != g.Format || f.Size != g.Size || !f.MTime.Equal(g.MTime) {
			return false
		}
	}
	return true
}

// writeManifest writes dir/manifest.json atomically.
func writeManifest(dir string, c *Corpus, o BuildOptions, width int, stats BuildStats) error {
	raw, err := json.MarshalIndent(newManifest(c, o, width, stats), "", "  ")
	if err != nil {
		return fmt.Errorf("build tokens: manifest: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, ManifestFile), append(raw, '\n')); err != nil {
		return fmt.Errorf("build tokens: manifest: %w", err)
	}
	return nil
}

// UpToDate reports whether dir holds the result of Build(ctx, c, dir, o):
// its manifest names the same files with the same sizes and modification
// times, the same field, tokenizer hash, vocabulary, separator and
// validation fraction, and both token files are there with the counts it
// records. It then returns the recorded stats. Without o.TokenizerHash,
// nothing identifies the tokenizer, and it reports false.
func UpToDate(dir string, c *Corpus, o BuildOptions) (BuildStats, bool) {
	if c == nil || o.TokenizerHash == "" {
		return BuildStats{}, false
	}
	width, err := o.validate()
	if err != nil {
		return BuildStats{}, false
	}
	raw, err := readcap.File(filepath.Join(dir, ManifestFile), maxManifest)
	if err != nil {
		return BuildStats{}, false
	}
	var got manifest
	if err := json.Unmarshal(raw, &got); err != nil {
		return BuildStats{}, false
	}
	if !newManifest(c, o, width, BuildStats{}).sameBuild(got) {
		return BuildStats{}, false
	}
	for _, f := range []struct {
		name   string
		tokens int64
	}{{TrainFile, got.Stats.TrainTokens}, {ValFile, got.Stats.ValTokens}} {
		t, err := OpenTokens(filepath.Join(dir, f.name))
		if err != nil {
			return BuildStats{}, false
		}
		ok := t.Len() == f.tokens && t.Width() == width
		t.Close()
		if !ok {
			return BuildStats{}, false
		}
	}
	return got.Stats, true
}
