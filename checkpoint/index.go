package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/densessm/densessm/internal/readcap"
)

// maxIndexSize bounds the size of a sharded checkpoint's index file (those of
// the largest published models take a few hundred KiB).
const maxIndexSize = 64 << 20

// openIndex opens a sharded checkpoint from its index file, which may take
// at most maxIndexSize bytes (a larger file, or a device or pipe that gives
// more, is an error wrapping api.ErrOutOfRange).
func openIndex(path string) (_ *Checkpoint, err error) {
	text, err := readcap.File(path, maxIndexSize)
	if err != nil {
		return nil, fmt.Errorf("checkpoint index: %w", err)
	}
	weightMap, err := decodeIndex(text)
	if err != nil {
		return nil, corruptf(path, "index: %v", err)
	}
	var shards []string
	for name, shard := range weightMap {
		if !filepath.IsLocal(shard) {
			return nil, corruptf(path, "tensor %q: shard %q is not a file in the index's directory", name, shard)
		}
		shards = append(shards, shard)
	}
	slices.Sort(shards)
	shards = slices.Compact(shards)

	dir := filepath.Dir(path)
	files := make([]*file, 0, len(shards))
	defer func() {
		if err != nil {
			for _, f := range files {
				f.close()
			}
		}
	}()
	for _, shard := range shards {
		f, err := openFile(filepath.Join(dir, shard))
		if err != nil {
			return nil, fmt.Errorf("checkpoint index %s: shard: %w", path, err)
		}
		files = append(files, f)
		for _, t := range f.header.tensors {
			switch listed, ok := weightMap[t.Name]; {
			case !ok:
				return nil, tensorCorruptf(f.path, t.Name, "not listed in the index %s", path)
			case listed != shard:
				return nil, tensorCorruptf(f.path, t.Name, "the index %s places it in %s", path, listed)
			}
		}
	}
	c := newCheckpoint(path, files)
	if len(c.tensors) != len(weightMap) {
		var missing []string
		for name := range weightMap {
			if _, ok := c.byName[name]; !ok {
				missing = append(missing, name)
			}
		}
		slices.Sort(missing)
		return nil, tensorCorruptf(path, missing[0], "the index places it in %s, which does not hold it (%d such tensors)", weightMap[missing[0]], len(missing))
	}
	return c.pairQ8()
}

// decodeIndex parses an index file and returns its weight map (tensor name
// to shard file name). Other top-level keys, such as "metadata", are skipped.
func decodeIndex(text []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	if err := expectDelim(dec, '{', "the index"); err != nil {
		return nil, err
	}
	var weightMap map[string]string
	seen := map[string]bool{}
	for dec.More() {
		key, err := objectKey(dec, seen, "the index")
		if err != nil {
			return nil, err
		}
		if key == "weight_map" {
			if weightMap, err = decodeStringMap(dec, "weight_map", false); err != nil {
				return nil, err
			}
			continue
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("the index: %q: %w", key, err)
		}
	}
	if err := expectEnd(dec, "the index"); err != nil {
		return nil, err
	}
	if err := expectEOF(dec, "the index object"); err != nil {
		return nil, err
	}
	if weightMap == nil {
		return nil, fmt.Errorf("the index has no weight_map")
	}
	return weightMap, nil
}
