package checkpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"
)

// NameAliases is implemented by models whose checkpoints in the wild name a
// tensor otherwise than the model's parameter (the original state-spaces
// Mamba files say backbone.embedding.weight where Hugging Face says
// backbone.embeddings.weight).
type NameAliases interface {
	// CheckpointAliases returns the other names, in order of preference, the
	// tensor of the parameter called name may have in a checkpoint.
	CheckpointAliases(name string) []string
}

// ConfigRecognizer is implemented by architectures that can tell their
// config.json by its fields when its model_type does not name a registered
// architecture (the original state-spaces Mamba configs have none).
type ConfigRecognizer interface {
	RecognizesConfig(configJSON []byte) bool
}

// LoadOptions tune LoadModel.
type LoadOptions struct {
	// Arch forces the architecture; empty means: the registered architecture
	// named by config.json's model_type, else the one that recognises the
	// config's fields.
	Arch string
}

// LoadModel builds the model a directory describes (config.json plus
// model.safetensors, a sharded model.safetensors.index.json, or a PyTorch
// pytorch_model.bin, sharded or not) on b and fills every parameter from
// the weights. A missing tensor, a tensor of another shape, or a config that
// disagrees with the weights is an error naming the tensor.
func LoadModel(ctx context.Context, dir string, b api.Backend, opts LoadOptions) (_ api.Model, err error) {
	defer api.Recover(&err)
	cfgJSON, err := ReadConfigJSON(dir)
	if err != nil {
		return nil, err
	}
	arch, err := pickArchitecture(cfgJSON, opts.Arch)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	cfg, err := arch.ParseConfig(cfgJSON)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	var model api.Model
	if ub, ok := arch.(api.UninitializedBuilder); ok {
		// Every parameter is loaded below (a missing one is an error), so
		// drawing random initial values would be wasted.
		model, err = ub.NewUninitialized(cfg, b)
	} else {
		model, err = arch.New(cfg, b, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	ck, err := Open(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	params := model.Parameters()
	if al, ok := model.(NameAliases); ok {
		for i, p := range params {
			if _, found := ck.Lookup(p.Name); found {
				continue
			}
			for _, alt := range al.CheckpointAliases(p.Name) {
				if _, found := ck.Lookup(alt); found {
					params[i].Name = alt
					break
				}
			}
		}
	}
	if err := ck.LoadInto(ctx, params); err != nil {
		return nil, err
	}
	return model, nil
}

// pickArchitecture finds the architecture for a config.json.
func pickArchitecture(cfgJSON []byte, forced string) (api.Architecture, error) {
	if forced != "" {
		return api.LookupArchitecture(forced)
	}
	var head struct {
		ModelType string `json:"model_type"`
	}
	if err := json.Unmarshal(cfgJSON, &head); err != nil {
		return nil, fmt.Errorf("config.json: %v: %w", err, api.ErrCorrupt)
	}
	if head.ModelType != "" {
		if a, err := api.LookupArchitecture(head.ModelType); err == nil {
			return a, nil
		}
	}
	for _, name := range api.Architectures() {
		a, _ := api.LookupArchitecture(name)
		if r, ok := a.(ConfigRecognizer); ok && r.RecognizesConfig(cfgJSON) {
			return a, nil
		}
	}
	return nil, fmt.Errorf("config.json (model_type %q) matches no registered architecture %v: %w",
		head.ModelType, api.Architectures(), api.ErrNotFound)
}

// SaveModel writes model into dir as config.json (the model's own config,
// which for the Hugging Face architectures is the form transformers reads)
// and model.safetensors in float32, each file atomically. dir is created if
// needed.
func SaveModel(dir string, model api.Model) (err error) {
	defer api.Recover(&err)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	cfg, err := json.MarshalIndent(model.Config(), "", "  ")
	if err != nil {
		return fmt.Errorf("save model %s: config: %w", dir, err)
	}
	tensors, err := FromParameters(model.Parameters(), api.F32)
	if err != nil {
		return fmt.Errorf("save model %s: %w", dir, err)
	}
	if err := Write(filepath.Join(dir, SingleFileName), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ConfigFileName), append(cfg, '\n'))
}
