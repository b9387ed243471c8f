package data

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/tokenizer"
)

// The files Build writes in its folder.
const (
	TrainFile    = "train.tokens"
	ValFile      = "val.tokens"
	ManifestFile = "manifest.json"
)

// BuildOptions configures Build.
type BuildOptions struct {
	// Tokenizer encodes the documents (required). Its post-processor's
	// special tokens are not added; a truncation or padding its file sets
	// does apply to each document.
	Tokenizer *tokenizer.Tokenizer
	// TokenizerHash identifies the tokenizer in the manifest (a hash of its
	// tokenizer.json, say). Without it UpToDate never reports a build as
	// current.
	TokenizerHash string
	// Separator is appended after every document (the EOS id); -1 means
	// none.
	Separator int32
	// ValFraction is the share of documents held out for validation, in
	// [0, 1).
	ValFraction float64
	// Workers is the number of encoding goroutines; 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, is called on Build's goroutine with the bytes of
	// the corpus's files done so far and their total.
	Progress func(bytesDone, bytesTotal int64)
}

// BuildStats counts what Build wrote.
type BuildStats struct {
	// Documents is the number of documents, both splits together.
	Documents int64 `json:"documents"`
	// ValDocuments is how many of them went to validation.
	ValDocuments int64 `json:"val_documents"`
	// TrainTokens and ValTokens are the token counts of the two files,
	// separators included.
	TrainTokens int64 `json:"train_tokens"`
	ValTokens   int64 `json:"val_tokens"`
	// Bytes is the UTF-8 length of the documents' text.
	Bytes int64 `json:"bytes"`
}

// validate checks the options and returns the token width.
func (o BuildOptions) validate() (int, error) {
	if o.Tokenizer == nil {
		return 0, fmt.Errorf("no tokenizer: %w", api.ErrConfig)
	}
	vocab := o.Tokenizer.VocabSize()
	if vocab <= 0 || vocab > math.MaxInt32 {
		return 0, fmt.Errorf("tokenizer vocabulary size %d: %w", vocab, api.ErrConfig)
	}
	if o.Separator < -1 || int64(o.Separator) >= int64(vocab) {
		return 0, fmt.Errorf("separator %d is not -1 nor an id of the vocabulary of %d: %w", o.Separator, vocab, errors.Join(api.ErrConfig, api.ErrOutOfRange))
	}
	if !(o.ValFraction >= 0 && o.ValFraction < 1) {
		return 0, fmt.Errorf("validation fraction %v is not in [0, 1): %w", o.ValFraction, api.ErrConfig)
	}
	if o.Workers < 0 {
		return 0, fmt.Errorf("workers %d: must be 0 (every core) or more: %w", o.Workers, api.ErrConfig)
	}
	return TokenWidth(vocab), nil
}

// Build tokenizes the corpus into dir/train.tokens and dir/val.tokens (the
// folder is created if needed) and writes dir/manifest.json, which lets
// UpToDate tell whether a later Build would write the same files.
//
// Documents are encoded in parallel (o.Workers goroutines) and written in
// document order, each followed by o.Separator; the encoding is
// tokenizer.EncodeRaw's: the tokenizer's without its file's truncation,
// post-processor special tokens or padding. Document i goes to validation when a hash of i
// falls under o.ValFraction; when o.ValFraction > 0 and there are at least
// two documents but no document was drawn for one side, the last document
// moves to it. Memory holds O(Workers) documents, not the corpus: the
// tokens go to temporary files in dir, then each final file is written
// atomically (header, then tokens), and the manifest last.
//
// The context is checked between documents; cancellation returns an error
// wrapping ctx.Err(). The old manifest is removed first, so a build that
// stops part way is never taken as current by UpToDate. A
// corpus without documents gives an error wrapping api.ErrNotFound, bad
// options one wrapping api.ErrConfig, a token id that does not fit the
// vocabulary one wrapping api.ErrOutOfRange.
func Build(ctx context.Context, c *Corpus, dir string, o BuildOptions) (BuildStats, error) {
	if c == nil {
		return BuildStats{}, fmt.Errorf("build tokens: no corpus: %w", api.ErrConfig)
	}
	width, err := o.validate()
	if err != nil {
		return BuildStats{}, fmt.Errorf("build tokens: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return BuildStats{}, fmt.Errorf("build tokens: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, ManifestFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return BuildStats{}, fmt.Errorf("build tokens: %w", err)
	}
	train, err := newSplitWriter(dir, "train")
	if err != nil {
		return BuildStats{}, err
	}
	defer train.discard()
	val, err := newSplitWriter(dir, "val")
	if err != nil {
		return BuildStats{}, err
	}
	defer val.discard()

	stats, err := encodeSplits(ctx, c, o, width, train, val)
	if err != nil {
		return BuildStats{}, fmt.Errorf("build tokens: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return BuildStats{}, fmt.Errorf("build tokens: %w", err)
	}
	if err := train.finish(filepath.Join(dir, TrainFile), width); err != nil {
		return BuildStats{}, err
	}
	if err := ctx.Err(); err != nil {
		return BuildStats{}, fmt.Errorf("build tokens: %w", err)
	}
	if err := val.finish(filepath.Join(dir, ValFile), width); err != nil {
		return BuildStats{}, err
	}
	if err := writeManifest(dir, c, o, width, stats); err != nil {
		return BuildStats{}, err
	}
	return stats, nil
}

// encodeSplits encodes the corpus into the two split writers and balances
// them.
func encodeSplits(ctx context.Context, c *Corpus, o BuildOptions, width int, train, val *splitWriter) (BuildStats, error) {
	workers := o.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	vocab := o.Tokenizer.VocabSize()
	encode := func(ctx context.Context, doc string) ([]byte, int64, error) {
		return encodeDocument(ctx, o.Tokenizer, doc, o.Separator, vocab, width)
	}
	var stats BuildStats
	var reported int64 = -1
	err := encodeCorpus(ctx, c, workers, encode, func(e encoded) error {
		s := train
		if isValidation(e.idx, o.ValFraction) {
			s = val
		}
		if err := s.add(e.toks, e.n); err != nil {
			return err
		}
		stats.Documents++
		stats.Bytes += int64(e.textBytes)
		if o.Progress != nil && e.read != reported {
			reported = e.read
			o.Progress(e.read, c.Bytes())
		}
		return nil
	})
	if err != nil {
		return BuildStats{}, err
	}
	if stats.Documents == 0 {
		return BuildStats{}, fmt.Errorf("the corpus (%d files) holds no document: %w", len(c.files), api.ErrNotFound)
	}
	if o.ValFraction > 0 && stats.Documents >= 2 {
		switch {
		case val.docs == 0:
			err = train.moveLast(val)
		case train.docs == 0:
			err = val.moveLast(train)
		}
		if err != nil {
			return BuildStats{}, err
		}
	}
	stats.ValDocuments = val.docs
	stats.TrainTokens, stats.ValTokens = train.tokens, val.tokens
	if o.Progress != nil {
		o.Progress(c.Bytes(), c.Bytes())
	}
	return stats, nil
}

// encodeDocument returns the little-endian tokens of doc followed by sep
// (when not -1), and their count.
func encodeDocument(ctx context.Context, tok *tokenizer.Tokenizer, doc string, sep int32, vocab, width int) ([]byte, int64, error) {
	buf := make([]byte, 0, (len(doc)/3+2)*width)
	var n int64
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	enc, err := tok.EncodeRaw(doc, false)
	if err != nil {
		return nil, 0, err
	}
	for _, id := range enc.IDs {
		if err := checkToken(int64(id), vocab, width); err != nil {
			return nil, 0, err
		}
		buf = appendToken(buf, width, int32(id))
	}
	n += int64(len(enc.IDs))
	if sep >= 0 {
		buf = appendToken(buf, width, sep)
		n++
	}
	return buf, n, nil
}
