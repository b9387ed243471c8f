package checkpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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

// IgnoredCheckpointNames is implemented by models whose checkpoints in the
// wild carry tensors that are not parameters and that the model
// deliberately leaves unread: buffers it recomputes from its config, or
// names of tensors it has dropped. LoadModel refuses a checkpoint tensor
// that is not a parameter (under its own name or one of its
// CheckpointAliases), not a tied copy of one (see LoadModel) and not ignored
// by IgnoresCheckpointTensor, unless LoadOptions.AllowExtra is set. A model
// that does not implement the interface is treated as if its method were
// DefaultIgnoresCheckpointTensor; one that does should usually consult
// DefaultIgnoresCheckpointTensor too.
type IgnoredCheckpointNames interface {
	// IgnoresCheckpointTensor reports whether a checkpoint tensor of this
	// name, not a parameter of the model, is expected and may be skipped.
	IgnoresCheckpointTensor(name string) bool
}

// wellKnownBuffers are the last components of the names of non-parameter
// tensors that published checkpoints carry: the rotary angles and decays
// torchscale's RetNetRelPos registers as buffers (torchscale RetNet
// state_dicts say retnet_rel_pos.angle, the official DenseRetNet ones
// model.retnet_rel_pos.angle), which the models recompute from the config.
var wellKnownBuffers = []string{"retnet_rel_pos.angle", "retnet_rel_pos.decay"}

// DefaultIgnoresCheckpointTensor reports whether name is a well-known
// non-parameter buffer that LoadModel skips for models that do not
// implement IgnoredCheckpointNames: retnet_rel_pos.angle and
// retnet_rel_pos.decay, alone or after a prefix ("model.", "decoder.").
func DefaultIgnoresCheckpointTensor(name string) bool {
	for _, b := range wellKnownBuffers {
		if name == b || strings.HasSuffix(name, "."+b) {
			return true
		}
	}
	return false
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
	// CheckConfig, if not nil, is called with the parsed configuration
	// before the model is built, so that a caller can refuse it (a model
	// too large for the memory at hand) before anything is allocated; its
	// error is returned, with the directory added.
	CheckConfig func(cfg api.Config) error
	// AllowExtra loads a checkpoint that holds tensors the model does not
	// take (see IgnoredCheckpointNames), ignoring them, instead of refusing
	// it.
	AllowExtra bool
	// AllowNonFinite loads weights that hold NaN or infinite values instead
	// of refusing them.
	AllowNonFinite bool
	// Progress, if not nil, is called with the bytes of stored tensor data
	// loaded so far and in all: first with done 0, then after tensors, at
	// most once per 4 MiB loaded, and last with done == total when every
	// tensor is loaded. It runs on the loading goroutine.
	Progress func(done, total int64)
}

// LoadModel builds the model a directory describes (config.json plus
// model.safetensors, a sharded model.safetensors.index.json, or a PyTorch
// pytorch_model.bin, sharded or not) on b and fills every parameter from
// the weights.
//
// The config and the weights must agree, which LoadModel checks before it
// loads anything: a parameter with no tensor (api.ErrNotFound), a tensor of
// another shape (api.ErrShape) or of a dtype that does not convert
// (api.ErrDType), and a checkpoint tensor that is not a parameter
// (api.ErrConfig; typically config.json has fewer layers than the weights)
// give one error that counts each kind, names the first few tensors and
// says what to check. A tensor that no parameter takes is not counted as
// extra when its name is one the model's CheckpointAliases gives for one of
// its parameters (a parameter found under its own name leaves the tensor of
// its alias unread), when the model ignores it (see IgnoredCheckpointNames),
// or when it is a tied copy: it shares its stored bytes and its shape with a
// tensor a parameter takes, as torch.save stores an lm_head tied to the
// embeddings. LoadOptions.AllowExtra skips extra tensors instead.
//
// Every value loaded must be finite: the first tensor that holds a NaN or
// an infinity (also one that a conversion to the parameter's dtype
// overflows to infinity) gives an error naming it and counting its
// non-finite values, wrapping api.ErrCorrupt, unless
// LoadOptions.AllowNonFinite is set. The check is made on the bytes being
// uploaded, in the same pass.
//
// ctx is checked between tensors; LoadOptions.Progress reports the bytes
// loaded.
func LoadModel(ctx context.Context, dir string, b api.Backend, opts LoadOptions) (_ api.Model, err error) {
	defer api.Recover(&err)
	cfgJSON, err := ReadConfigJSON(dir)
	if err != nil {
		return nil, err
	}
	return loadModel(ctx, dir, cfgJSON, func() (*Checkpoint, error) { return Open(dir) }, b, opts)
}

// LoadModelBytes is LoadModel for a model held in memory: the contents of
// its config.json and of its safetensors (or PyTorch) weights file; name
// stands for the model in errors.
func LoadModelBytes(ctx context.Context, name string, configJSON, weights []byte, b api.Backend, opts LoadOptions) (_ api.Model, err error) {
	defer api.Recover(&err)
	return loadModel(ctx, name, configJSON, func() (*Checkpoint, error) { return OpenBytes(name, weights) }, b, opts)
}

// loadModel builds the model cfgJSON describes and loads the weights of
// the checkpoint open returns into it.
func loadModel(ctx context.Context, dir string, cfgJSON []byte, open func() (*Checkpoint, error), b api.Backend, opts LoadOptions) (_ api.Model, err error) {
	arch, err := pickArchitecture(cfgJSON, opts.Arch)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	cfg, err := arch.ParseConfig(cfgJSON)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	if opts.CheckConfig != nil {
		if err := opts.CheckConfig(cfg); err != nil {
			return nil, fmt.Errorf("model %s: %w", dir, err)
		}
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
	ck, err := open()
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	params := model.Parameters()
	aliases := map[string]bool{} // names the model knows for its parameters
	if al, ok := model.(NameAliases); ok {
		for i, p := range params {
			alts := al.CheckpointAliases(p.Name)
			for _, alt := range alts {
				aliases[alt] = true
			}
			if _, found := ck.Lookup(p.Name); found {
				continue
			}
			for _, alt := range alts {
				if _, found := ck.Lookup(alt); found {
					params[i].Name = alt
					break
				}
			}
		}
	}
	ignores := DefaultIgnoresCheckpointTensor
	if ig, ok := model.(IgnoredCheckpointNames); ok {
		ignores = ig.IgnoresCheckpointTensor
	}
	err = ck.load(ctx, params, loadSettings{
		what:        fmt.Sprintf("the %d parameters of the %s model", len(params), cfg.ArchName()),
		hints:       true,
		checkExtra:  !opts.AllowExtra,
		expected:    func(name string) bool { return aliases[name] || ignores(name) },
		checkFinite: !opts.AllowNonFinite,
		progress:    opts.Progress,
	})
	if err != nil {
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
// and model.safetensors in float32, each file atomically (see Write). dir is
// created if needed. ctx is checked between parameters while they are read
// from the backend and while the weights are written; when it is done
// before the weights are complete, SaveModel stops and returns its error,
// leaving any previous files untouched and no temporary file behind.
func SaveModel(ctx context.Context, dir string, model api.Model) error {
	return SaveModelAs(ctx, dir, model, api.F32)
}

// SaveModelAs is SaveModel with the weights stored as storage: F32, or
// F16 or BF16 (rounded to nearest even; the loader widens them back to the
// parameters' F32), for a smaller file.
func SaveModelAs(ctx context.Context, dir string, model api.Model, storage api.DType) (err error) {
	defer api.Recover(&err)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save model %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	cfg, err := json.MarshalIndent(model.Config(), "", "  ")
	if err != nil {
		return fmt.Errorf("save model %s: config: %w", dir, err)
	}
	params := model.Parameters()
	tensors := make([]NamedTensor, len(params))
	for i, p := range params {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("save model %s: %w", dir, err)
		}
		if tensors[i], err = FromParameter(p, storage); err != nil {
			return fmt.Errorf("save model %s: %w", dir, err)
		}
	}
	if err := Write(ctx, filepath.Join(dir, SingleFileName), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	// The weights are written: the small config follows whatever ctx says,
	// so that the directory stays consistent.
	return atomicfile.WriteFile(filepath.Join(dir, ConfigFileName), append(cfg, '\n'))
}
