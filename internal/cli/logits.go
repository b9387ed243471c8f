package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
)

func newLogitsCmd() *cobra.Command {
	var (
		modelDir, idList, idsFile, mode, out, arch string
		threads, chunk                             int
		load                                       loadFlags
	)
	cmd := &cobra.Command{
		Use:   "logits --model DIR [--ids 0,12,7 | --ids-file F | < ids] --out FILE.npy",
		Short: "Run a model over token ids and write the float32 logits [T,V] as a NumPy .npy file",
		Long: `logits loads the model in DIR (config.json and safetensors weights), runs it
over the given token ids and writes the logits, one row per token, as a
float32 .npy array [T, V] in C order. --out - writes the array to stdout.

The ids come from --ids, from --ids-file, or from stdin, as a JSON array or a
list separated by commas or spaces, so that
  densessm tokenize --tokenizer tokenizer.json < text | densessm logits --model DIR --out l.npy
works.

--mode parallel runs the whole sequence at once (the training form);
--mode chunkwise runs it in chunks of --chunk tokens, a few
chunks at a time, in memory that grows with the chunk, not the sequence;
--mode recurrent feeds the tokens one at a time through the recurrent state,
in memory that does not grow with the sequence either.
The forms agree to about 1e-5 relative. Rows are written as they are
computed; the memory a form needs is estimated before the model runs, and a
run that would not fit is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dst := fileOutput{path: out, stdout: cmd.OutOrStdout()}
			if err := dst.check(); err != nil {
				return err
			}
			form, err := api.ParseMode(mode)
			if err != nil {
				return fmt.Errorf("--mode: %w", err)
			}
			if chunk < 1 {
				return fmt.Errorf("--chunk %d: must be at least 1: %w", chunk, api.ErrConfig)
			}
			ids, err := readIDs(idList, idsFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			tokens := len(ids)
			switch mode {
			case "recurrent":
				tokens = 0 // the recurrent form's memory does not grow with the sequence
			case "chunkwise":
				tokens = min(tokens, chunkWindow(chunk))
			}
			m, err := loadModel(cmd, modelDir, arch, threads, tokens, load)
			if err != nil {
				return err
			}
			V := m.Config().Vocab()
			if err := checkIDs(ids, V); err != nil {
				return err
			}
			defer m.Close()
			if !m.Info().Supports(form) {
				return fmt.Errorf("--mode %s: %s models have no such form: %w", form, m.Config().ArchName(), api.ErrUnsupported)
			}
			return dst.write(func(w io.Writer) error {
				if _, err := w.Write(npyHeader(len(ids), V)); err != nil {
					return err
				}
				return writeLogits(cmd, w, m, ids, mode, chunk)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "model directory (config.json + model.safetensors or a sharded index)")
	f.StringVar(&idList, "ids", "", "token ids, comma-separated (default: read from --ids-file or stdin)")
	f.StringVar(&idsFile, "ids-file", "", "file of token ids (a JSON array or a comma- or space-separated list)")
	f.StringVar(&mode, "mode", "parallel", "parallel, chunkwise or recurrent")
	f.IntVar(&chunk, "chunk", 64, "tokens per chunk of the chunkwise form")
	f.StringVar(&out, "out", "", "output .npy file (- for stdout)")
	f.StringVar(&arch, "arch", "", "architecture, when config.json does not say (see: densessm archs)")
	f.IntVar(&threads, "threads", 0, "worker threads (0: all cores)")
	load.register(f)
	for _, name := range []string{"model", "out"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

// writeLogits runs m over ids in the given form and writes the logits'
// rows to w as float32s as they are computed. The chunkwise and recurrent
// forms show their progress on stderr when that is a terminal (and as
// events under Execute).
func writeLogits(cmd *cobra.Command, w io.Writer, m api.Model, ids []int32, mode string, chunk int) error {
	ctx := cmd.Context()
	switch mode {
	case "parallel":
		t, err := m.Forward(ctx, [][]int32{ids}, api.Form{})
		if err != nil {
			return err
		}
		return writeTensor(w, t)
	case "chunkwise":
		s, err := m.NewState(1)
		if err != nil {
			return err
		}
		defer s.Close()
		window := chunkWindow(chunk)
		bar := newProgress(cmd, int64(len(ids)), "tokens", false)
		defer bar.done()
		for from := 0; from < len(ids); from += window {
			to := min(from+window, len(ids))
			t, err := m.Prefill(ctx, s, [][]int32{ids[from:to]}, api.Form{Mode: api.Chunkwise, Chunk: chunk})
			if err != nil {
				return err
			}
			if err := writeTensor(w, t); err != nil {
				return err
			}
			bar.add(int64(to - from))
		}
		return nil
	default: // recurrent
		s, err := m.NewState(1)
		if err != nil {
			return err
		}
		defer s.Close()
		bar := newProgress(cmd, int64(len(ids)), "tokens", false)
		defer bar.done()
		for _, id := range ids {
			bar.add(1)
			t, err := m.Step(ctx, s, []int32{id})
			if err != nil {
				return err
			}
			if err := writeTensor(w, t); err != nil {
				return err
			}
		}
		return nil
	}
}

// chunkWindow is how many tokens the chunkwise form runs at a time: whole
// chunks, about 512 tokens, enough for the matrix products to run at full
// speed while memory stays bounded.
func chunkWindow(chunk int) int { return chunk * max(1, 512/chunk) }

// writeTensor writes an F32 tensor's elements, from the backend's own
// storage where it gives host access to it (no copy).
func writeTensor(w io.Writer, t api.Tensor) error {
	if h, ok := t.(api.HostFloat32s); ok {
		return writeFloat32s(w, h.HostFloat32s())
	}
	return writeFloat32s(w, api.Float32s(t))
}
