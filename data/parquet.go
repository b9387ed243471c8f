package data

import (
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/schema"

	"github.com/densessm/densessm/api"
)

// parquetBatch is how many values of the text column are decoded at a time.
const parquetBatch = 64

// parquetBuffer is the read buffer of a column chunk: pages are read
// through it rather than the whole chunk at once.
const parquetBuffer = 1 << 20

// openParquet opens a Parquet file read from r and finds the text column:
// a top-level (or dotted-path) byte-array column of strings, not repeated.
func openParquet(r parquet.ReaderAtSeeker, field string) (pf *file.Reader, col int, err error) {
	defer recoverCorrupt(&err)
	props := parquet.NewReaderProperties(memory.NewGoAllocator())
	props.BufferedStreamEnabled = true
	props.BufferSize = parquetBuffer
	if size, err := r.Seek(0, io.SeekEnd); err == nil {
		props.BufferSize = max(min(props.BufferSize, size), 4096)
	}
	pf, err = file.NewParquetReader(r, file.WithReadProps(props))
	if err != nil {
		return nil, 0, fmt.Errorf("parquet: %v: %w", err, api.ErrCorrupt)
	}
	sc := pf.MetaData().Schema
	col = sc.ColumnIndexByName(field)
	if col < 0 {
		names := make([]string, sc.NumColumns())
		for i := range names {
			names[i] = fmt.Sprintf("%q", sc.Column(i).Path())
		}
		return nil, 0, fmt.Errorf("parquet: no column %q (the columns are %s): %w", field, strings.Join(names, ", "), api.ErrNotFound)
	}
	c := sc.Column(col)
	if c.PhysicalType() != parquet.Types.ByteArray || !stringish(c) {
		return nil, 0, fmt.Errorf("parquet: column %q holds %s (%s), not strings: %w", field, c.PhysicalType(), c.LogicalType(), api.ErrUnsupported)
	}
	if c.MaxRepetitionLevel() > 0 {
		return nil, 0, fmt.Errorf("parquet: column %q is a list, not one string per row: %w", field, api.ErrUnsupported)
	}
	return pf, col, nil
}

// stringish reports whether a byte-array column holds text: annotated as
// a string, or not annotated at all (old writers).
func stringish(c *schema.Column) bool {
	switch c.LogicalType().(type) {
	case schema.StringLogicalType:
		return true
	case schema.NoLogicalType, nil:
		return c.ConvertedType() == schema.ConvertedTypes.None || c.ConvertedType() == schema.ConvertedTypes.UTF8
	default:
		return false
	}
}

// checkParquet opens the Parquet file at path and checks its text column.
func checkParquet(path, field string) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	_, _, err = openParquet(fh, field)
	return err
}

// readParquet emits the non-null, non-empty values of the text column,
// row group by row group, parquetBatch values at a time.
func readParquet(r parquet.ReaderAtSeeker, field string, emit func(string) error) error {
	pf, col, err := openParquet(r, field)
	if err != nil {
		return err
	}
	values := make([]parquet.ByteArray, parquetBatch)
	defs := make([]int16, parquetBatch)
	var row int64
	for g := range pf.NumRowGroups() {
		cr, err := parquetColumn(pf, g, col)
		if err != nil {
			return err
		}
		for {
			rows, n, err := parquetRead(cr, values, defs)
			if err != nil {
				return fmt.Errorf("parquet: row group %d: %w", g, err)
			}
			if rows == 0 {
				break
			}
			for _, v := range values[:n] {
				if !utf8.Valid(v) {
					return fmt.Errorf("parquet: row group %d near row %d: text is not valid UTF-8: %w", g, row, api.ErrCorrupt)
				}
				if len(v) > 0 {
					if err := emit(string(v)); err != nil {
						return err
					}
				}
			}
			row += rows
		}
	}
	return nil
}

// parquetColumn returns the reader of column col of row group g.
func parquetColumn(pf *file.Reader, g, col int) (cr *file.ByteArrayColumnChunkReader, err error) {
	defer recoverCorrupt(&err)
	c, err := pf.RowGroup(g).Column(col)
	if err != nil {
		return nil, fmt.Errorf("parquet: row group %d: %v: %w", g, err, api.ErrCorrupt)
	}
	cr, ok := c.(*file.ByteArrayColumnChunkReader)
	if !ok {
		return nil, fmt.Errorf("parquet: row group %d: column %d is not a byte array: %w", g, col, api.ErrCorrupt)
	}
	return cr, nil
}

// parquetRead decodes the next values of a column: rows is how many rows
// it covered (0 at the end), n how many non-null values are in values.
func parquetRead(cr *file.ByteArrayColumnChunkReader, values []parquet.ByteArray, defs []int16) (rows int64, n int, err error) {
	defer recoverCorrupt(&err)
	if !cr.HasNext() {
		if err := cr.Err(); err != nil {
			return 0, 0, fmt.Errorf("%v: %w", err, api.ErrCorrupt)
		}
		return 0, 0, nil
	}
	rows, n, err = cr.ReadBatch(int64(len(values)), values, defs, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("%v: %w", err, api.ErrCorrupt)
	}
	if n > len(values) || n < 0 || rows < 0 {
		return 0, 0, fmt.Errorf("decoder returned %d values for %d rows: %w", n, rows, api.ErrCorrupt)
	}
	return rows, n, nil
}
