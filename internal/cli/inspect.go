package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/checkpoint"
)

// inspectTensor is one row of `inspect --json`.
type inspectTensor struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
}

// inspectReport is the JSON document `inspect --json` prints.
type inspectReport struct {
	Tensors    []inspectTensor `json:"tensors"`
	Parameters int64           `json:"parameters"`
}

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "List the tensors of a checkpoint (safetensors or PyTorch .bin; file, sharded index or model directory)",
		Long: `inspect lists every tensor of a checkpoint with its dtype and shape, and the
total parameter count. FILE is a .safetensors file, a PyTorch pytorch_model.bin
(read without running any code from it), a sharded checkpoint's index .json,
or a model directory holding one of them. Headers are validated against the
file size before anything is read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ck, err := checkpoint.Open(args[0])
			if err != nil {
				return err
			}
			defer ck.Close()
			rep := inspectReport{Tensors: []inspectTensor{}, Parameters: ck.NumParameters()}
			for _, ti := range ck.Tensors() {
				shape := []int(ti.Shape)
				if shape == nil {
					shape = []int{}
				}
				rep.Tensors = append(rep.Tensors, inspectTensor{Name: ti.Name, DType: ti.DType.String(), Shape: shape})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeInspectJSON(out, rep)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDTYPE\tSHAPE")
			for _, t := range rep.Tensors {
				fmt.Fprintf(tw, "%s\t%s\t%v\n", displayName(t.Name), t.DType, t.Shape)
			}
			fmt.Fprintf(tw, "%d tensors, %d parameters\n", len(rep.Tensors), rep.Parameters)
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: {\"tensors\":[{\"name\",\"dtype\",\"shape\"}],\"parameters\":N}")
	return cmd
}

// writeInspectJSON prints rep as JSON with one tensor per line, so that the
// output is both valid JSON and readable for checkpoints of a thousand tensors.
func writeInspectJSON(w io.Writer, rep inspectReport) error {
	var buf bytes.Buffer
	buf.WriteString(`{"tensors":[`)
	for i, t := range rep.Tensors {
		line, err := json.Marshal(t)
		if err != nil {
			return err
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString("\n  ")
		buf.Write(line)
	}
	fmt.Fprintf(&buf, "\n],\"parameters\":%d}\n", rep.Parameters)
	_, err := w.Write(buf.Bytes())
	return err
}

// displayName returns a tensor name as the text table shows it: as it is
// when every character is printable, and otherwise quoted with Go escapes,
// so that a name holding control characters, tabs or newlines can neither
// drive the terminal nor forge rows of the table.
func displayName(name string) string {
	if !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(name)
	}
	return name
}
