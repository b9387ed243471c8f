package cli

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
	"unsafe"
)

// npyHeader returns the header of a NumPy .npy file (format version 1.0)
// holding a little-endian float32 array of the given shape in C order.
func npyHeader(shape ...int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
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
	buf := make([]byte, 0, 10+len(header))
	buf = append(buf, "\x93NUMPY\x01\x00"...)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(header)))
	return append(buf, header...)
}

// writeFloat32s writes xs little-endian without copying them on
// little-endian machines.
func writeFloat32s(w io.Writer, xs []float32) error {
	if len(xs) == 0 {
		return nil
	}
	if littleEndian {
		_, err := w.Write(unsafe.Slice((*byte)(unsafe.Pointer(&xs[0])), 4*len(xs)))
		return err
	}
	buf := make([]byte, 0, 4*len(xs))
	for _, v := range xs {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	_, err := w.Write(buf)
	return err
}

// littleEndian reports whether the machine stores a float32 as .npy's '<f4'.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()
