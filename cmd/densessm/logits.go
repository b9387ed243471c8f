package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

func newLogitsCmd() *cobra.Command {
	var (
		modelDir, idList, mode, out, arch string
		threads, chunk                    int
	)
	cmd := &cobra.Command{
		Use:   "logits --model DIR --ids 0,12,7 --out FILE.npy",
		Short: "Run a model over token ids and write the float32 logits [T,V] as a NumPy .npy file",
		Long: `logits loads the model in DIR (config.json and safetensors weights), runs it
over the given token ids and writes the logits, one row per token, as a
float32 .npy array [T, V] in C order.

--mode parallel runs the whole sequence at once (the training form);
--mode chunkwise runs it in chunks of --chunk tokens (RetNet models);
--mode recurrent feeds the tokens one at a time through the recurrent state.
The forms agree to about 1e-5 relative.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ids, err := parseIDs(idList)
			if err != nil {
				return err
			}
			b, err := api.NewBackend("cpu", api.BackendOptions{Threads: threads})
			if err != nil {
				return err
			}
			m, err := checkpoint.LoadModel(cmd.Context(), modelDir, b, checkpoint.LoadOptions{Arch: arch})
			if err != nil {
				return err
			}
			V := m.Config().Vocab()
			var logits []float32
			switch mode {
			case "parallel":
				t, err := m.Forward(cmd.Context(), [][]int32{ids})
				if err != nil {
					return err
				}
				logits = api.Float32s(t)
			case "chunkwise":
				cm, ok := m.(chunkwiseModel)
				if !ok {
					return fmt.Errorf("--mode chunkwise: %s models have no chunkwise form: %w", m.Config().ArchName(), api.ErrUnsupported)
				}
				t, err := cm.ForwardChunkwise(cmd.Context(), [][]int32{ids}, chunk)
				if err != nil {
					return err
				}
				logits = api.Float32s(t)
			case "recurrent":
				s, err := m.NewState(1)
				if err != nil {
					return err
				}
				for _, id := range ids {
					t, err := m.Step(cmd.Context(), s, []int32{id})
					if err != nil {
						return err
					}
					logits = append(logits, api.Float32s(t)...)
				}
			default:
				return fmt.Errorf("--mode %q: want parallel, chunkwise or recurrent: %w", mode, api.ErrUnsupported)
			}
			return writeNPY(out, logits, len(ids), V)
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "model directory (config.json + model.safetensors or a sharded index)")
	f.StringVar(&idList, "ids", "", "comma-separated token ids")
	f.StringVar(&mode, "mode", "parallel", "parallel, chunkwise or recurrent")
	f.IntVar(&chunk, "chunk", 64, "tokens per chunk of the chunkwise form")
	f.StringVar(&out, "out", "", "output .npy file")
	f.StringVar(&arch, "arch", "", "architecture, when config.json does not say (see `densessm archs`)")
	f.IntVar(&threads, "threads", 0, "worker threads (0: all cores)")
	for _, name := range []string{"model", "ids", "out"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

// chunkwiseModel is a model with a chunkwise form (RetNet and DenseRetNet).
type chunkwiseModel interface {
	ForwardChunkwise(ctx context.Context, ids [][]int32, chunk int) (api.Tensor, error)
}

// parseIDs reads "0,12,7" into token ids.
func parseIDs(s string) ([]int32, error) {
	var ids []int32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--ids: %q is not a token id: %w", f, api.ErrOutOfRange)
		}
		ids = append(ids, int32(v))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("--ids: no token ids: %w", api.ErrShape)
	}
	return ids, nil
}
