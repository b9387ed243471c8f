package data

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/arrowcheck"
)

// arrowFileMagic starts (and ends) an Arrow IPC file; a stream has none.
const arrowFileMagic = "ARROW1"

// arrowBatches calls fn with each record batch of an Arrow IPC stream, or
// of an IPC file (which holds a stream between its magic and its footer),
// read from r (size bytes), after checking the schema with check. A batch
// is valid only during fn. The messages go through arrowcheck.Messages, which
// checks them before arrow-go decodes them.
func arrowBatches(r io.ReaderAt, size int64, check func(*arrow.Schema) error, fn func(arrow.RecordBatch) error) error {
	start, end := int64(0), size
	var head [8]byte
	if n, _ := r.ReadAt(head[:], 0); n == len(head) && string(head[:6]) == arrowFileMagic {
		// magic and padding (8 bytes), the stream, the footer, the
		// footer's int32 length, the magic (6 bytes).
		start, end = 8, size-10
		var tail [10]byte
		if n, _ := r.ReadAt(tail[:], size-10); n == len(tail) && string(tail[4:]) == arrowFileMagic {
			if fl := int64(int32(binary.LittleEndian.Uint32(tail[:4]))); fl >= 0 && fl <= end-start {
				end -= fl
			}
		}
		if end < start {
			return fmt.Errorf("arrow file: %d bytes, too short for the file format: %w", size, api.ErrCorrupt)
		}
	}
	mr := arrowcheck.NewMessages(bufio.NewReaderSize(io.NewSectionReader(r, start, end-start), int(min(end-start, 1<<20))), end-start)
	sr, err := guard(func() (*ipc.Reader, error) {
		return ipc.NewReaderFromMessageReader(mr, ipc.WithAllocator(memory.NewGoAllocator()))
	})
	if err != nil {
		mr.Release()
		return fmt.Errorf("arrow: reading the schema: %w", err)
	}
	defer sr.Release()
	if err := check(sr.Schema()); err != nil {
		return err
	}
	for i := 0; ; i++ {
		more, err := guard(func() (bool, error) { return sr.Next(), nil })
		if err != nil {
			return fmt.Errorf("arrow: record batch %d: %w", i, err)
		}
		if !more {
			if err := sr.Err(); err != nil {
				if errors.Is(err, api.ErrCorrupt) || errors.Is(err, api.ErrUnsupported) {
					return fmt.Errorf("arrow: record batch %d: %w", i, err)
				}
				return fmt.Errorf("arrow: record batch %d: %v: %w", i, err, api.ErrCorrupt)
			}
			return nil
		}
		if err := fn(sr.RecordBatch()); err != nil {
			return fmt.Errorf("record batch %d: %w", i, err)
		}
	}
}

// guard runs f, turning its error or panic into an error wrapping
// api.ErrCorrupt.
func guard[T any](f func() (T, error)) (v T, err error) {
	defer recoverCorrupt(&err)
	v, err = f()
	if err != nil && !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrUnsupported) {
		return v, fmt.Errorf("%v: %w", err, api.ErrCorrupt)
	}
	return v, err
}

// arrowTextColumn finds the text column of an Arrow schema: a string,
// large_string or string_view field named field.
func arrowTextColumn(sc *arrow.Schema, field string) (int, error) {
	if sc == nil {
		return 0, fmt.Errorf("arrow: no schema: %w", api.ErrCorrupt)
	}
	idx := sc.FieldIndices(field)
	if len(idx) == 0 {
		names := make([]string, sc.NumFields())
		for i := range names {
			names[i] = fmt.Sprintf("%q", sc.Field(i).Name)
		}
		return 0, fmt.Errorf("arrow: no column %q (the columns are %s): %w", field, strings.Join(names, ", "), api.ErrNotFound)
	}
	switch t := sc.Field(idx[0]).Type; t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return idx[0], nil
	default:
		return 0, fmt.Errorf("arrow: column %q is %s, not a string type: %w", field, t, api.ErrUnsupported)
	}
}

// stringArray is the common reading interface of the Arrow string arrays.
type stringArray interface {
	arrow.Array
	Value(i int) string
}

// arrowStrings copies the non-null, non-empty values of a string column.
func arrowStrings(col arrow.Array) (docs []string, err error) {
	defer recoverCorrupt(&err)
	a, ok := col.(stringArray)
	if !ok {
		return nil, fmt.Errorf("arrow: column is %s, not a string array: %w", col.DataType(), api.ErrCorrupt)
	}
	for i := range a.Len() {
		if a.IsNull(i) {
			continue
		}
		v := a.Value(i)
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("arrow: row %d: text is not valid UTF-8: %w", i, api.ErrCorrupt)
		}
		if v != "" {
			docs = append(docs, strings.Clone(v))
		}
	}
	return docs, nil
}

// readArrow emits the documents of an Arrow IPC file or stream of size
// bytes read from r, one record batch at a time.
func readArrow(r io.ReaderAt, size int64, field string, emit func(string) error) error {
	col := 0
	check := func(sc *arrow.Schema) (err error) {
		col, err = arrowTextColumn(sc, field)
		return err
	}
	return arrowBatches(r, size, check, func(rec arrow.RecordBatch) error {
		if col >= int(rec.NumCols()) {
			return fmt.Errorf("arrow: the batch has %d columns, fewer than its schema: %w", rec.NumCols(), api.ErrCorrupt)
		}
		docs, err := arrowStrings(rec.Column(col))
		if err != nil {
			return err
		}
		for _, d := range docs {
			if err := emit(d); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkArrow opens the Arrow file at path and checks its text column.
func checkArrow(path, field string) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	stop := errors.New("schema checked")
	err = arrowBatches(fh, st.Size(), func(sc *arrow.Schema) error {
		if _, err := arrowTextColumn(sc, field); err != nil {
			return err
		}
		return stop // the batches are not read
	}, func(arrow.RecordBatch) error { return nil })
	if err != nil && !errors.Is(err, stop) {
		return err
	}
	return nil
}
