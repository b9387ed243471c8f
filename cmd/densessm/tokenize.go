package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/tokenizer"
)

// maxInput bounds what tokenize reads from stdin.
const maxInput = 1 << 30

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
--count prints only the number of tokens; --decode reads a JSON array of ids
from stdin and prints the text.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := tokenizer.Load(file)
			if err != nil {
				return err
			}
			in, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxInput+1))
			if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			if len(in) > maxInput {
				return fmt.Errorf("stdin is over %d bytes: %w", maxInput, api.ErrOutOfRange)
			}
			out := cmd.OutOrStdout()
			if decode {
				var ids []int
				if err := json.Unmarshal(in, &ids); err != nil {
					return fmt.Errorf("--decode wants a JSON array of ids on stdin: %v: %w", err, api.ErrCorrupt)
				}
				text, err := tok.DecodeWith(ids, noSpecialToken)
				if err != nil {
					return err
				}
				_, err = io.WriteString(out, text)
				return err
			}
			enc, err := tok.EncodeFull(string(in), !noSpecialToken)
			if err != nil {
				return err
			}
			if count {
				_, err = fmt.Fprintln(out, len(enc.IDs))
				return err
			}
			data, err := json.Marshal(enc.IDs)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(out, "%s\n", data)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "tokenizer", "", "tokenizer.json (Hugging Face format)")
	f.BoolVar(&count, "count", false, "print only the number of tokens")
	f.BoolVar(&decode, "decode", false, "decode a JSON array of ids read from stdin")
	f.BoolVar(&noSpecialToken, "no-special", false, "encode without the post-processor's special tokens; decode skipping special tokens")
	cmd.MarkFlagRequired("tokenizer")
	return cmd
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
			if len(paths) == 0 {
				root, err := goroot()
				if err != nil {
					return err
				}
				paths = []string{filepath.Join(root, "src")}
			}
			texts, err := readCorpus(paths)
			if err != nil {
				return err
			}
			tr, err := tokenizer.NewTrainer(tokenizer.TrainConfig{VocabSize: vocab, MinFrequency: minFreq, SpecialTokens: special})
			if err != nil {
				return err
			}
			tr.Feed(texts)
			data, err := tr.Train()
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(out, data); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.ErrOrStderr(), "trained on %d files, wrote %s\n", len(texts), out)
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

// readCorpus reads every regular file under paths, one text per file,
// skipping files that are not valid UTF-8 or are larger than 16 MiB.
func readCorpus(paths []string) ([]string, error) {
	var texts []string
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			if info, err := d.Info(); err != nil || info.Size() > 16<<20 {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if isText(data) {
				texts = append(texts, string(data))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read corpus: %w", err)
		}
	}
	if len(texts) == 0 {
		return nil, fmt.Errorf("read corpus %v: no text files: %w", paths, api.ErrNotFound)
	}
	return texts, nil
}

// isText reports whether data looks like text: valid UTF-8 without NUL.
func isText(data []byte) bool { return utf8.Valid(data) && bytes.IndexByte(data, 0) < 0 }
