package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/internal/readcap"
)

func newConvertCmd() *cobra.Command {
	var (
		in, out, arch, dtype string
		load                 loadFlags
	)
	cmd := &cobra.Command{
		Use:   "convert --in DIR|FILE --out DIR|FILE",
		Short: "Convert a model directory or a weights file (PyTorch .bin, sharded, safetensors) to safetensors",
		Long: `convert rewrites weights as safetensors.

With a directory, --in is a model directory (config.json plus weights in any
format Open reads: model.safetensors, pytorch_model.bin, or a sharded index of
either). The model is built with its registered architecture (--arch forces
one), loaded, and saved into the --out directory as config.json and a
model.safetensors of --dtype: f32 as densessm init writes them; bf16 or f16,
half the size, rounded to nearest even; or q8, where the weight matrices (the
linear layers, embeddings and output head) are quantized to 8-bit blocks as
llama.cpp's q8_0 (34 bytes per 32 values) and the other parameters stay f32.
A q8 file is loaded with q8 weights (as --weights q8 gives), without
quantizing again; --weights f32 widens them. A bf16 file is widened to f32 on
load unless --weights bf16 keeps it so, exactly. The layout is in
docs/formats.md.
A tokenizer.json beside the weights is copied; other files are not.

With a file, --in is one weights file (a pytorch_model.bin, a .safetensors, or
an .index.json of shards) and --out the .safetensors file to write: every
tensor keeps its name, dtype and shape, and no architecture is needed.

PyTorch files are read without running any code from them (see
github.com/densessm/densessm/checkpoint). Output files are written atomically.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "-" {
				return fmt.Errorf("convert: --out -: a converted checkpoint is written to files, not stdout: %w", api.ErrConfig)
			}
			st, err := os.Stat(in)
			if err != nil {
				return fmt.Errorf("convert: %w", err)
			}
			if st.IsDir() {
				if err := checkOutDir(out); err != nil {
					return err
				}
				storage, weights, err := storageDType(dtype)
				if err != nil {
					return err
				}
				if cmd.Flags().Changed("weights") {
					return fmt.Errorf("convert: --dtype sets how the weights are stored; --weights applies to the commands that run a model: %w", api.ErrConfig)
				}
				load.weights = weights
				m, err := loadModel(cmd, in, arch, 0, 0, load)
				if err != nil {
					return fmt.Errorf("convert: %w", err)
				}
				if err := checkpoint.SaveModelAs(cmd.Context(), out, m, storage); err != nil {
					return err
				}
				return copyTokenizer(in, out)
			}
			if cmd.Flags().Changed("dtype") {
				return fmt.Errorf("convert: --dtype applies to a model directory, and %s is a file: %w", in, api.ErrConfig)
			}
			if arch != "" {
				return fmt.Errorf("convert: --arch applies to a model directory, and %s is a file: %w", in, api.ErrConfig)
			}
			if err := (fileOutput{path: out}).check(); err != nil {
				return err
			}
			return convertFile(cmd.Context(), in, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&in, "in", "", "model directory, or weights file, to read")
	f.StringVar(&out, "out", "", "directory (for a model) or .safetensors file (for a weights file) to write")
	f.StringVar(&dtype, "dtype", "f32", "storage of a model directory's weights: f32, bf16, f16 or q8")
	f.StringVar(&arch, "arch", "", "architecture of a model directory (default: from its config.json)")
	load.register(f)
	cmd.MarkFlagRequired("in")
	cmd.MarkFlagRequired("out")
	return cmd
}

// convertFile copies every tensor of the weights file in, unchanged, into
// the safetensors file out. The input's safetensors metadata is kept; a
// PyTorch input, which has none, gets {"format": "pt"}, as Hugging Face
// marks weights that come from PyTorch.
func convertFile(ctx context.Context, in, out string) (err error) {
	ck, err := checkpoint.Open(in)
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	defer func() { err = errors.Join(err, ck.Close()) }()
	infos := ck.Tensors()
	tensors := make([]checkpoint.NamedTensor, len(infos))
	for i, ti := range infos {
		raw, err := ck.Raw(ti.Name)
		if err != nil {
			return fmt.Errorf("convert: %w", err)
		}
		tensors[i] = checkpoint.NamedTensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: raw}
	}
	metadata := ck.Metadata()
	if len(metadata) == 0 {
		metadata = map[string]string{"format": "pt"}
	}
	if err := checkpoint.Write(ctx, out, tensors, metadata); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	return nil
}

// storageDType parses --dtype into the storage of the F32 parameters and
// the weights the model is loaded with: q8 quantizes the weight matrices
// and keeps the other parameters F32; bf16 and f16 store every tensor so.
func storageDType(s string) (storage, weights api.DType, err error) {
	switch s {
	case "f32":
		return api.F32, api.F32, nil
	case "bf16":
		return api.BF16, api.F32, nil
	case "f16":
		return api.F16, api.F32, nil
	case "q8":
		return api.F32, api.Q8_0, nil
	}
	return 0, 0, fmt.Errorf("convert: --dtype %q: want f32, bf16, f16 or q8: %w", s, api.ErrConfig)
}

// copyTokenizer copies the tokenizer.json of model directory in, if it has
// one, into out.
func copyTokenizer(in, out string) error {
	raw, err := readcap.File(filepath.Join(in, tokenizerFile), 256<<20)
	if errors.Is(err, api.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(out, tokenizerFile), raw)
}
