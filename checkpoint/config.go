package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

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
	text, _, err := readConfig(path)
	return text, err
}

// ModelType returns the model_type of a config.json (path as for
// ReadConfigJSON), or "" when it has none or cannot be read (LoadModel
// then says what is wrong): what a loader looks at to find a plugin's
// architecture before it loads.
func ModelType(path string) string {
	_, fields, err := readConfig(path)
	if err != nil {
		return ""
	}
	var name string
	json.Unmarshal(fields["model_type"], &name)
	return name
}

// readConfig is ReadConfigJSON that also returns the fields the check
// parsed, so that a loader parses config.json once.
func readConfig(path string) ([]byte, configFields, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, ConfigFileName)
	}
	text, err := readcap.File(path, maxConfigSize)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	fields, err := parseConfigFields(text)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	return text, fields, nil
}

// configFields is a parsed config.json: the raw JSON value of each field of
// its top-level object.
type configFields map[string]json.RawMessage

// parseConfigFields parses config.json bytes, which must hold one JSON
// object. Anything else gives an error wrapping api.ErrCorrupt.
func parseConfigFields(data []byte) (configFields, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var c configFields
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

// modelType returns the config's model_type ("" when it is absent or
// null). A value that is not a string gives an error wrapping
// api.ErrCorrupt.
func (c configFields) modelType() (string, error) {
	var t string
	if raw, ok := c["model_type"]; ok {
		if err := json.Unmarshal(raw, &t); err != nil {
			return "", fmt.Errorf("model_type %s: not a string: %w", raw, api.ErrCorrupt)
		}
	}
	return t, nil
}
