package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/readcap"
)

// applyConfigFile reads a YAML or JSON file (JSON is YAML) whose keys are
// the command's flag names without dashes and sets every flag the command
// line did not set, so that the command line wins. List flags take a list
// or a single value. Keys in objects (the only one: a model configuration
// under objectKey) are returned as JSON for the caller. An unknown key is
// an error naming it.
func applyConfigFile(cmd *cobra.Command, path, objectKey string) (object []byte, err error) {
	raw, err := readcap.File(path, maxConfigFile)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("--config %s: %v: %w", path, oneLine(err.Error()), api.ErrCorrupt)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		v := doc[key]
		if key == objectKey && objectKey != "" {
			if _, ok := v.(map[string]any); !ok {
				return nil, fmt.Errorf("--config %s: %q: want an object (a config.json's fields): %w", path, key, api.ErrConfig)
			}
			if object, err = json.Marshal(v); err != nil {
				return nil, fmt.Errorf("--config %s: %q: %v: %w", path, key, err, api.ErrConfig)
			}
			continue
		}
		f := cmd.Flags().Lookup(key)
		if f == nil || key == "config" || key == "help" {
			return nil, fmt.Errorf("--config %s: unknown key %q (keys are the flags of `densessm %s`): %w", path, key, cmd.Name(), api.ErrConfig)
		}
		if f.Changed {
			continue
		}
		if err := setFlag(f, v); err != nil {
			return nil, fmt.Errorf("--config %s: %s: %w", path, key, err)
		}
	}
	return object, nil
}

// setFlag sets f from a decoded YAML value.
func setFlag(f *pflag.Flag, v any) error {
	values := []any{v}
	if list, ok := v.([]any); ok {
		if !strings.HasSuffix(f.Value.Type(), "Slice") && !strings.HasSuffix(f.Value.Type(), "Array") {
			return fmt.Errorf("a list for a flag that takes one value: %w", api.ErrConfig)
		}
		values = list
	}
	for _, x := range values {
		var s string
		switch x := x.(type) {
		case string:
			s = x
		case int:
			s = strconv.Itoa(x)
		case float64:
			s = strconv.FormatFloat(x, 'g', -1, 64)
		case bool:
			s = strconv.FormatBool(x)
		default:
			return fmt.Errorf("value %v: want a string, number or boolean: %w", x, api.ErrConfig)
		}
		if err := f.Value.Set(s); err != nil {
			return fmt.Errorf("%v: %w", err, api.ErrConfig)
		}
	}
	f.Changed = true
	return nil
}
