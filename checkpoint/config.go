package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/readcap"
)

// ConfigFileName is the name of a Hugging Face model configuration file.
const ConfigFileName = "config.json"

// maxConfigSize bounds the size of a config.json file.
const maxConfigSize = 16 << 20

// ReadConfigJSON returns the bytes of a config.json: path is the file itself
// or a checkpoint directory that holds config.json. A missing file (or a
// directory where the file should be) gives an error wrapping
// api.ErrNotFound; a file over 16 MiB, or a device or pipe that gives more
// (such as /dev/zero), one wrapping api.ErrOutOfRange, read no further than
// the cap; a file that is not a JSON object one wrapping api.ErrCorrupt.
// Every error names the file.
func ReadConfigJSON(path string) ([]byte, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, ConfigFileName)
	}
	text, err := readcap.File(path, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if _, err := ParseHFConfig(text); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return text, nil
}

// HFConfig is a parsed Hugging Face config.json, for reading the common
// fields by any of their alternative names. Numbers are kept as json.Number,
// so integers are exact. Architectures decode their own structs for the
// rest.
type HFConfig map[string]any

// ParseHFConfig parses config.json bytes, which must hold one JSON object.
// Malformed JSON gives an error wrapping api.ErrCorrupt.
func ParseHFConfig(data []byte) (HFConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var c HFConfig
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v: %w", err, api.ErrCorrupt)
	}
	if c == nil {
		return nil, fmt.Errorf("null instead of a JSON object: %w", api.ErrCorrupt)
	}
	if err := expectEOF(dec, "the config object"); err != nil {
		return nil, fmt.Errorf("%v: %w", err, api.ErrCorrupt)
	}
	return c, nil
}

// lookup returns the value of the first of keys that is present and not
// null, and the key it came from.
func (c HFConfig) lookup(keys []string) (string, any, error) {
	for _, k := range keys {
		if v, ok := c[k]; ok && v != nil {
			return k, v, nil
		}
	}
	if len(keys) == 1 {
		return "", nil, fmt.Errorf("config has no %q: %w", keys[0], api.ErrConfig)
	}
	return "", nil, fmt.Errorf("config has none of %q: %w", keys, api.ErrConfig)
}

// Has reports whether any of keys is present with a non-null value.
func (c HFConfig) Has(keys ...string) bool {
	_, _, err := c.lookup(keys)
	return err == nil
}

// Int returns the integer value of the first of keys present (a null value
// counts as absent). A number with a fractional part, one that does not fit
// in an int, or a value of another type gives an error wrapping
// api.ErrConfig, as does the absence of all keys.
func (c HFConfig) Int(keys ...string) (int, error) {
	k, v, err := c.lookup(keys)
	if err != nil {
		return 0, err
	}
	if num, ok := v.(json.Number); ok {
		if i, err := strconv.ParseInt(string(num), 10, 0); err == nil {
			return int(i), nil
		}
		// Python writes some integers as floats ("4096.0").
		if f, err := num.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) <= 1<<53 && float64(int(f)) == f {
			return int(f), nil
		}
	}
	return 0, fmt.Errorf("config %q is %v, not an integer: %w", k, v, api.ErrConfig)
}

// Float returns the numeric value of the first of keys present (a null value
// counts as absent). A value of another type, or the absence of all keys,
// gives an error wrapping api.ErrConfig.
func (c HFConfig) Float(keys ...string) (float64, error) {
	k, v, err := c.lookup(keys)
	if err != nil {
		return 0, err
	}
	if num, ok := v.(json.Number); ok {
		if f, err := num.Float64(); err == nil {
			return f, nil
		}
	}
	return 0, fmt.Errorf("config %q is %v, not a number: %w", k, v, api.ErrConfig)
}

// Str returns the string value of the first of keys present (a null value
// counts as absent). A value of another type, or the absence of all keys,
// gives an error wrapping api.ErrConfig.
func (c HFConfig) Str(keys ...string) (string, error) {
	k, v, err := c.lookup(keys)
	if err != nil {
		return "", err
	}
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("config %q is %v, not a string: %w", k, v, api.ErrConfig)
}

// Bool returns the boolean value of the first of keys present (a null value
// counts as absent). A value of another type, or the absence of all keys,
// gives an error wrapping api.ErrConfig.
func (c HFConfig) Bool(keys ...string) (bool, error) {
	k, v, err := c.lookup(keys)
	if err != nil {
		return false, err
	}
	if b, ok := v.(bool); ok {
		return b, nil
	}
	return false, fmt.Errorf("config %q is %v, not a boolean: %w", k, v, api.ErrConfig)
}
