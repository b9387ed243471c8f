package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/tokenizer"
)

// maxDecodeInput bounds the ids tokenize --decode reads from stdin.
const maxDecodeInput = 1 << 30

func newTokenizeCmd() *cobra.Command {
	var (
		file           string
		count, decode  bool
		noSpecialToken bool
	)
	cmd := &cobra.Command{
		Use:   "tokenize --tokenizer tokenizer.json",
		Short: "Encode stdin to token ids (a JSON array), or decode ids back to text",
		Long: `tokenize reads text from stdin and prints its token ids as a JSON array,
encoding exactly as Hugging Face tokenizers does with the same tokenizer.json.
--count prints only the number of tokens; --decode reads ids from stdin (a
JSON array, or a list separated by commas or spaces) and prints the text.

The text is encoded as a stream: ids are printed as they are found, in
memory that does not grow with the input, for every tokenizer whose
pipeline can be cut between lines (the byte-level BPE ones: GPT-2, cl100k,
Qwen2, NeoX, and those densessm trains). Others read the whole input first
(up to 1 GiB).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := tokenizer.Load(file)
			if err != nil {
				return err
			}
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10)
			if decode {
				ids, err := parseIDs(cappedReader(cmd.InOrStdin(), maxDecodeInput))
				if err != nil {
					return fmt.Errorf("--decode: ids on stdin: %w", err)
				}
				wide := make([]int, len(ids))
				for i, id := range ids {
					wide[i] = int(id)
				}
				text, err := tok.DecodeWith(wide, noSpecialToken)
				if err != nil {
					return err
				}
				out.WriteString(text)
				return out.Flush()
			}
			in := cmd.InOrStdin()
			var size int64
			if f, ok := in.(*os.File); ok {
				if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
					size = st.Size()
				}
			}
			bar := newProgress(cmd, size, "tokenizing", true)
			defer bar.done()
			n := 0
			var line []byte
			err = tok.EncodeReader(cmd.Context(), progressReader{in, bar}, !noSpecialToken, func(ids []int) error {
				if count {
					n += len(ids)
					return nil
				}
				line = line[:0]
				for _, id := range ids {
					if n == 0 {
						line = append(line, '[')
					} else {
						line = append(line, ',')
					}
					line = strconv.AppendInt(line, int64(id), 10)
					n++
				}
				_, err := out.Write(line)
				return err
			})
			if err != nil {
				return err
			}
			switch {
			case count:
				fmt.Fprintln(out, n)
			case n == 0:
				out.WriteString("[]\n")
			default:
				out.WriteString("]\n")
			}
			return out.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "tokenizer", "", "tokenizer.json (Hugging Face format)")
	f.BoolVar(&count, "count", false, "print only the number of tokens")
	f.BoolVar(&decode, "decode", false, "decode ids read from stdin")
	f.BoolVar(&noSpecialToken, "no-special", false, "encode without the post-processor's special tokens; decode skipping special tokens")
	cmd.MarkFlagRequired("tokenizer")
	return cmd
}

// progressReader advances a progress bar by the bytes read through it.
type progressReader struct {
	r   io.Reader
	bar *progress
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.bar.add(int64(n))
	return n, err
}

func newTokenizerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokenizer",
		Short: "Tokenizer tools",
	}
	var (
		vocab, minFreq int
		out            string
		special        []string
	)
	train := &cobra.Command{
		Use:   "train --vocab-size N --out tokenizer.json [PATH...]",
		Short: "Train a byte-level BPE tokenizer (GPT-2 style) on text files",
		Long: `train learns a byte-level BPE tokenizer with Hugging Face's BpeTrainer
algorithm from the files under each PATH (directories are walked; only
UTF-8 text files are read) and writes a tokenizer.json that Hugging Face
tokenizers loads. Without PATH it trains on the Go source tree under
$(go env GOROOT)/src.`,
		RunE: func(cmd *cobra.Command, paths []string) error {
			dst := fileOutput{path: out, stdout: cmd.OutOrStdout()}
			if err := dst.check(); err != nil {
				return err
			}
			var bar *progress
			tr, err := tokenizer.NewTrainer(tokenizer.TrainConfig{
				VocabSize: vocab, MinFrequency: minFreq, SpecialTokens: special,
				Progress: func(done, total int) {
					if bar == nil {
						bar = newProgress(cmd, int64(total), "merges", false)
					}
					bar.set(int64(done))
				},
			})
			if err != nil {
				return err
			}
			if len(paths) == 0 {
				root, err := goroot()
				if err != nil {
					return err
				}
				paths = []string{filepath.Join(root, "src")}
			}
			files, err := feedCorpus(cmd, tr, paths)
			if err != nil {
				return err
			}
			data, err := tr.TrainContext(cmd.Context())
			bar.done()
			if err != nil {
				return err
			}
			if err := dst.write(func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.ErrOrStderr(), "trained on %d files, wrote %s\n", files, out)
			return err
		},
	}
	f := train.Flags()
	f.IntVar(&vocab, "vocab-size", 32000, "vocabulary size, the 256 byte tokens and special tokens included")
	f.IntVar(&minFreq, "min-frequency", 2, "never merge a pair seen fewer times")
	f.StringVar(&out, "out", "", "output tokenizer.json")
	f.StringSliceVar(&special, "special", []string{"<|endoftext|>"}, "special tokens, given ids 0, 1, ...")
	train.MarkFlagRequired("out")
	cmd.AddCommand(train)
	return cmd
}

// goroot returns the Go installation's root, from GOROOT or `go env GOROOT`.
func goroot() (string, error) {
	if r := os.Getenv("GOROOT"); r != "" {
		return r, nil
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("find the Go source tree (go env GOROOT): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// maxCorpusFile is the largest file a tokenizer is trained on; larger
// ones are skipped (they are rarely text).
const maxCorpusFile = 16 << 20

// feedBatch is how many bytes of text feedCorpus hands the trainer at a
// time: enough for its workers to split, and the most text it holds.
const feedBatch = 32 << 20

// feedCorpus feeds tr every text file under paths (valid UTF-8 without NUL,
// at most 16 MiB), a batch at a time so that memory holds the word counts
// and one batch rather than the corpus, and returns how many files it fed.
// A progress bar counts the bytes read.
func feedCorpus(cmd *cobra.Command, tr *tokenizer.Trainer, paths []string) (int, error) {
	ctx := cmd.Context()
	type file struct {
		path string
		size int64
	}
	var files []file
	var total int64
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil || info.Size() > maxCorpusFile {
				return err
			}
			files = append(files, file{path, info.Size()})
			total += info.Size()
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("read corpus: %w", err)
		}
	}
	bar := newProgress(cmd, total, "reading corpus", true)
	defer bar.done()
	var batch []string
	fed, size := 0, 0
	flush := func() error {
		err := tr.FeedContext(ctx, batch)
		batch, size = batch[:0], 0
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return 0, fmt.Errorf("read corpus: %w", err)
		}
		bar.add(f.size)
		if !isText(data) {
			continue
		}
		batch, size, fed = append(batch, string(data)), size+len(data), fed+1
		if size >= feedBatch {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if fed == 0 {
		return 0, fmt.Errorf("read corpus %v: no text files: %w", paths, api.ErrNotFound)
	}
	return fed, nil
}

// isText reports whether data looks like text: valid UTF-8 without NUL.
func isText(data []byte) bool { return utf8.Valid(data) && bytes.IndexByte(data, 0) < 0 }
