package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

func newConvertCmd() *cobra.Command {
	var (
		in, out, arch string
		load          loadFlags
	)
	cmd := &cobra.Command{
		Use:   "convert --in DIR|FILE --out DIR|FILE",
		Short: "Convert a model directory or a weights file (PyTorch .bin, sharded, safetensors) to safetensors",
		Long: `convert rewrites weights as safetensors.

With a directory, --in is a model directory (config.json plus weights in any
format Open reads: model.safetensors, pytorch_model.bin, or a sharded index of
either). The model is built with its registered architecture (--arch forces
one), loaded, and saved into the --out directory as config.json and a float32
model.safetensors, as densessm init writes them. Other files, such as the
tokenizer, are not copied.

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
				m, err := loadModel(cmd, in, arch, 0, 0, load)
				if err != nil {
					return fmt.Errorf("convert: %w", err)
				}
				return checkpoint.SaveModel(cmd.Context(), out, m)
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
