package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/readcap"
)

// maxIDsFile caps an --ids-file or ids on stdin: 1 GiB of text is over a
// hundred million ids, far past what a model's memory check lets through.
const maxIDsFile = 1 << 30

// readIDs returns the token ids of --ids (list), --ids-file (file) or, when
// neither is given, stdin. The text is a JSON array or a list separated by
// commas or white space, so that `densessm tokenize | densessm logits`
// works.
func readIDs(list, file string, stdin io.Reader) ([]int32, error) {
	switch {
	case list != "" && file != "":
		return nil, fmt.Errorf("--ids and --ids-file: give one: %w", api.ErrConfig)
	case list != "":
		ids, err := parseIDs(strings.NewReader(list))
		if err != nil {
			return nil, fmt.Errorf("--ids: %w", err)
		}
		return ids, nil
	case file != "":
		data, err := readcap.File(file, maxIDsFile)
		if err != nil {
			return nil, fmt.Errorf("--ids-file: %w", err)
		}
		ids, err := parseIDs(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("--ids-file %s: %w", file, err)
		}
		return ids, nil
	}
	if isTerminal(stdin) {
		return nil, fmt.Errorf("no token ids: give --ids, --ids-file or pipe them on stdin: %w", api.ErrConfig)
	}
	ids, err := parseIDs(cappedReader(stdin, maxIDsFile))
	if err != nil {
		return nil, fmt.Errorf("ids on stdin: %w", err)
	}
	return ids, nil
}

// cappedReader reads r until max bytes have come, and then fails with an
// error wrapping api.ErrOutOfRange if r has more: unlike io.LimitReader, it
// never cuts an input short without saying so.
func cappedReader(r io.Reader, max int64) io.Reader {
	return &capped{r: io.LimitReader(r, max+1), max: max}
}

type capped struct {
	r         io.Reader
	read, max int64
}

func (c *capped) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.read += int64(n); c.read > c.max {
		return 0, fmt.Errorf("input over %d bytes: %w", c.max, api.ErrOutOfRange)
	}
	return n, err
}

// parseIDs reads non-negative decimal token ids separated by commas or
// white space, optionally inside one pair of square brackets (a JSON
// array).
func parseIDs(r io.Reader) ([]int32, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		ids          []int32
		cur          int64
		inNum        bool
		open, closed bool
		prev         byte // the last token: 0 (none), 'n' (a number) or ','
		pos          int64
	)
	bad := func(c byte) error {
		return fmt.Errorf("byte %d: unexpected %q in a list of token ids (want e.g. 0,12,7 or [0, 12, 7]): %w", pos, c, api.ErrCorrupt)
	}
	endNumber := func() {
		if inNum {
			ids, cur, inNum, prev = append(ids, int32(cur)), 0, false, 'n'
		}
	}
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		pos++
		switch {
		case c >= '0' && c <= '9' && !closed:
			inNum = true
			if cur = cur*10 + int64(c-'0'); cur > 1<<31-1 {
				return nil, fmt.Errorf("byte %d: token id over %d: %w", pos, 1<<31-1, api.ErrOutOfRange)
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			endNumber()
		case c == ',' && !closed:
			endNumber()
			if prev != 'n' {
				return nil, bad(c)
			}
			prev = ','
		case c == '[' && !open && prev == 0 && !inNum:
			open = true
		case c == ']' && open && !closed:
			endNumber()
			if prev == ',' {
				return nil, bad(c)
			}
			closed = true
		case c == '-' && !inNum:
			return nil, fmt.Errorf("byte %d: negative token id: %w", pos, api.ErrOutOfRange)
		default:
			return nil, bad(c)
		}
	}
	endNumber()
	switch {
	case open && !closed:
		return nil, fmt.Errorf("a JSON array without its closing ']': %w", api.ErrCorrupt)
	case prev == ',':
		return nil, fmt.Errorf("a trailing comma: %w", api.ErrCorrupt)
	case len(ids) == 0:
		return nil, fmt.Errorf("no token ids: %w", api.ErrShape)
	}
	return ids, nil
}

// checkIDs reports the first id outside [0, vocab), with its position.
func checkIDs(ids []int32, vocab int) error {
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("token id %d at position %d is outside the vocabulary [0, %d) of the model: %w", id, i, vocab, api.ErrOutOfRange)
		}
	}
	return nil
}
