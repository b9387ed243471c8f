package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"
)

// wellKnownBuffers are the last components of the names of non-parameter
// tensors that published checkpoints carry: the rotary angles and decays
// torchscale's RetNetRelPos registers as buffers (torchscale RetNet
// state_dicts say retnet_rel_pos.angle, the official DenseRetNet ones
// model.retnet_rel_pos.angle), which the models recompute from the config.
var wellKnownBuffers = []string{"retnet_rel_pos.angle", "retnet_rel_pos.decay"}

// DefaultIgnoresCheckpointTensor reports whether name is a well-known
// non-parameter buffer that LoadModel skips for models that do not
// implement api.IgnoredCheckpointNames: retnet_rel_pos.angle and
// retnet_rel_pos.decay, alone or after a prefix ("model.", "decoder.").
func DefaultIgnoresCheckpointTensor(name string) bool {
	for _, b := range wellKnownBuffers {
		if name == b || strings.HasSuffix(name, "."+b) {
			return true
		}
	}
	return false
}

// LoadOptions tune LoadModel.
type LoadOptions struct {
	// Build says which backend the model is built on (and with how many
	// threads) and how its weights are stored; its Seed and Zeros are
	// ignored. Weights left unset take the storage the file's metadata
	// names (WeightsKey: Q8_0 for a file of Q8_0 weights), else F32.
	Build api.BuildOptions
	// Arch forces the architecture; empty means: the registered architecture
	// named by config.json's model_type, else the one that recognises the
	// config's fields.
	Arch string
	// CheckConfig, if not nil, is called with the parsed configuration
	// and the storage the model's weight matrices will have (Build.Weights,
	// or when unset the one the weights' metadata names, as for the model
	// built: found from the safetensors headers alone, F32 for none) before
	// the model is built, so that a caller can refuse it (a model too large
	// for the memory at hand: api.MemoryEstimate.WeightBytesFor) before
	// anything is allocated; its error is returned, with the directory
	// added.
	CheckConfig func(cfg api.Config, weights api.DType) error
	// AllowExtra loads a checkpoint that holds tensors the model does not
	// take (see api.IgnoredCheckpointNames), ignoring them, instead of refusing
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
// its alias unread), when the model ignores it (see api.IgnoredCheckpointNames),
// or when it is a tied copy: it shares its stored bytes and its shape with a
// tensor a parameter takes, as torch.save stores an lm_head tied to the
// embeddings. LoadOptions.AllowExtra skips extra tensors instead.
//
// Every value loaded must be finite: the first tensor that holds a NaN or
// an infinity (also one that a conversion to the parameter's dtype
// overflows to infinity) gives an error naming it and counting its
// non-finite values, wrapping api.ErrCorrupt, unless
// LoadOptions.AllowNonFinite is set. The check is made on the bytes being
// uploaded, in the same pass. F16 and BF16 weights of F32 parameters are
// uploaded as stored and widened on the backend (api.Kernels.Convert), so
// that a device receives half the bytes; the values are the same.
//
// ctx is checked between tensors; LoadOptions.Progress reports the bytes
// loaded.
//
// An architecture that loads directories itself (api.DirLoader: one served
// by a plugin, which maps the weights in its own process) is handed the
// directory after CheckConfig.
func LoadModel(ctx context.Context, dir string, opts LoadOptions) (_ api.Model, err error) {
	defer api.Recover(&err)
	cfgJSON, fields, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	arch, err := pickArchitecture(cfgJSON, fields, opts.Arch, opts.Build.BackendName())
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	return loadModel(ctx, dir, arch, cfgJSON, func() (*Checkpoint, error) { return Open(dir) },
		func() api.DType { return storedWeights(dir) }, opts)
}

// LoadModelBytes is LoadModel for a model held in memory: the contents of
// its config.json and of its safetensors (or PyTorch) weights file; name
// stands for the model in errors.
//
// An architecture that loads only directories (api.DirLoader) is handed a
// temporary directory holding the two files, removed afterwards.
func LoadModelBytes(ctx context.Context, name string, configJSON, weights []byte, opts LoadOptions) (_ api.Model, err error) {
	defer api.Recover(&err)
	var fields configFields
	if opts.Arch == "" {
		if fields, err = parseConfigFields(configJSON); err != nil {
			return nil, fmt.Errorf("model %s: config.json: %w", name, err)
		}
	}
	arch, err := pickArchitecture(configJSON, fields, opts.Arch, opts.Build.BackendName())
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	if _, ok := arch.(api.DirLoader); ok {
		dir, err := os.MkdirTemp("", "densessm-model-")
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, ConfigFileName), configJSON, 0o644); err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, SingleFileName), weights, 0o644); err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		return LoadModel(ctx, dir, opts)
	}
	return loadModel(ctx, name, arch, configJSON, func() (*Checkpoint, error) { return OpenBytes(name, weights) },
		func() api.DType { return headerWeights(bytes.NewReader(weights), int64(len(weights))) }, opts)
}

// loadModel builds the model of architecture arch that cfgJSON describes
// and loads the weights of the checkpoint open returns into it; stored
// returns the weight storage the checkpoint's metadata names without
// opening it (for CheckConfig).
func loadModel(ctx context.Context, dir string, arch api.Architecture, cfgJSON []byte, open func() (*Checkpoint, error), stored func() api.DType, opts LoadOptions) (_ api.Model, err error) {
	cfg, err := arch.ParseConfig(cfgJSON)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	if opts.CheckConfig != nil {
		weights := opts.Build.Weights
		if weights == api.Invalid {
			weights = stored()
		}
		if err := opts.CheckConfig(cfg, weights); err != nil {
			return nil, fmt.Errorf("model %s: %w", dir, err)
		}
	}
	if dl, ok := arch.(api.DirLoader); ok {
		return dl.LoadDir(ctx, dir, api.DirLoadOptions{Build: opts.Build, AllowExtra: opts.AllowExtra, AllowNonFinite: opts.AllowNonFinite})
	}
	ck, err := open()
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	// Every parameter is loaded below (a missing one is an error), so
	// drawing random initial values would be wasted.
	build := opts.Build
	build.Zeros = true
	if build.Weights == api.Invalid {
		build.Weights = ck.WeightDType()
	}
	m, err := arch.New(ctx, cfg, build)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	model, ok := m.(api.LocalModel)
	if !ok {
		m.Close()
		return nil, fmt.Errorf("model %s: architecture %s built a model outside this process without loading directories: %w", dir, arch.Name(), api.ErrUnsupported)
	}
	params := model.Parameters()
	aliases := map[string]bool{} // names the model knows for its parameters
	if al, ok := model.(api.NameAliases); ok {
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
	if ig, ok := model.(api.IgnoredCheckpointNames); ok {
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

// pickArchitecture finds the architecture for a config.json, given as
// its bytes and its parsed fields: forced when not empty, else the one
// its model_type names, else the one that recognises its fields. fields
// may be nil when forced is set.
func pickArchitecture(cfgJSON []byte, fields configFields, forced, backend string) (api.Architecture, error) {
	if forced != "" {
		return api.ArchitectureOn(forced, backend)
	}
	modelType, err := fields.modelType()
	if err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if modelType != "" {
		if _, err := api.LookupArchitecture(modelType); err == nil {
			return api.ArchitectureOn(modelType, backend)
		}
	}
	for _, name := range api.Architectures() {
		a, _ := api.LookupArchitecture(name)
		if r, ok := a.(api.ConfigRecognizer); ok && r.RecognizesConfig(cfgJSON) {
			return api.ArchitectureOn(name, backend)
		}
	}
	return nil, fmt.Errorf("config.json (model_type %q) matches no registered architecture %v: %w",
		modelType, api.Architectures(), api.ErrNotFound)
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
// parameters' F32), for a smaller file. Parameters stored in BF16 or Q8_0
// (a model built with api.BuildOptions.Weights) keep their dtype, Q8_0
// ones as a pair of tensors (see WeightsKey), which LoadModel reads back
// into Q8_0 weights without quantizing them again.
//
// A model that saves itself (api.DirSaver: a plugin's) is handed dir.
func SaveModelAs(ctx context.Context, dir string, model api.Model, storage api.DType) (err error) {
	defer api.Recover(&err)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save model %s: %w", dir, err)
	}
	if ds, ok := model.(api.DirSaver); ok {
		return ds.SaveDir(ctx, dir, storage)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	cfg, err := json.MarshalIndent(model.Config(), "", "  ")
	if err != nil {
		return fmt.Errorf("save model %s: config: %w", dir, err)
	}
	values, err := model.ReadParams(ctx, nil)
	if err != nil {
		return fmt.Errorf("save model %s: %w", dir, err)
	}
	tensors := make([]NamedTensor, 0, len(values))
	for _, v := range values { // Write stores Q8_0 tensors as pairs
		st := storage
		if v.DType == api.BF16 || v.DType == api.Q8_0 {
			st = v.DType
		}
		t, err := FromHost(v, st)
		if err != nil {
			return fmt.Errorf("save model %s: %w", dir, err)
		}
		tensors = append(tensors, t)
	}
	if err := Write(ctx, filepath.Join(dir, SingleFileName), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	// The weights are written: the small config follows whatever ctx says,
	// so that the directory stays consistent.
	return atomicfile.WriteFile(filepath.Join(dir, ConfigFileName), append(cfg, '\n'))
}
