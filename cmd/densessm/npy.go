package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/densessm/densessm/internal/atomicfile"
)

// writeNPY writes a float32 array of the given shape, C order, as a NumPy
// .npy file (format version 1.0), atomically.
func writeNPY(path string, data []float32, shape ...int) error {
	dims := make([]string, len(shape))
	n := 1
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("npy %s: %d values for shape %v", path, len(data), shape)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tuple)
	// Magic (6) + version (2) + header length (2) + header + '\n' is padded
	// with spaces to a multiple of 64 bytes.
	pad := 63 - (10+len(header))%64
	header += strings.Repeat(" ", pad) + "\n"
	return atomicfile.Write(path, func(w io.Writer) error {
		buf := make([]byte, 0, 10+len(header)+4*len(data))
		buf = append(buf, "\x93NUMPY\x01\x00"...)
		buf = binary.LittleEndian.AppendUint16(buf, uint16(len(header)))
		buf = append(buf, header...)
		for _, v := range data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
		_, err := w.Write(buf)
		return err
	})
}
