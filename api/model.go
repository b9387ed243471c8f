package api

import (
	"context"
	"fmt"
)

// Config is an architecture's hyper-parameters. Each architecture has its own
// concrete type, a struct that encoding/json marshals into the config.json the
// toolkit writes next to saved weights (which is also how a configuration
// crosses a process boundary: as that JSON).
type Config interface {
	// ArchName returns the registered name of the architecture the config
	// belongs to ("mamba", "densemamba", ...); it is the "model_type" of
	// config.json files the toolkit writes.
	ArchName() string
	// Vocab returns the number of rows of the output logits.
	Vocab() int
	// Validate reports an inconsistent configuration, wrapping ErrConfig.
	Validate() error
}

// Architecture makes models of one kind. Built-in implementations register
// themselves with RegisterArchitecture from an init function; a plugin
// host registers a proxy for each architecture a plugin serves.
type Architecture interface {
	// Name returns the registered name.
	Name() string
	// DefaultConfig returns a small, valid configuration, good for tests and
	// for training from scratch.
	DefaultConfig() Config
	// ParseConfig reads a config.json in any of the forms the architecture
	// accepts (Hugging Face, the original repository's, the toolkit's own).
	ParseConfig(configJSON []byte) (Config, error)
	// New builds a model of cfg on the backend opts names, its parameters
	// drawn from a generator seeded with opts.Seed (the same seed, config
	// and backend give the same weights) or, with opts.Zeros, allocated as
	// zeros for a loader that overwrites them all. ctx is checked while the
	// parameters are drawn.
	New(ctx context.Context, cfg Config, opts BuildOptions) (Model, error)
}

// BuildOptions say where and how Architecture.New builds a model. They are
// data, so that an architecture served by a plugin can build on its own
// side: Backend names a backend registered in the process that builds the
// model, not an object of the caller's.
type BuildOptions struct {
	// Backend is the registered name of the backend ("cpu" when empty).
	Backend string
	// BackendOptions configure the backend.
	BackendOptions BackendOptions
	// On, when not nil, is a backend of this process to build on, used
	// instead of constructing one from Backend and BackendOptions (several
	// models can then share one). Architectures served by a plugin cannot
	// take it and build on the backend named On.Name() with On's threads.
	On Backend
	// Seed seeds the initialisation of the parameters.
	Seed int64
	// Zeros allocates the parameters as zeros instead of drawing them: a
	// loader that overwrites every parameter skips the random draw. What the
	// configuration determines (rotary angles, decays) is set as always.
	Zeros bool
	// Weights is the storage of the weight matrices (those of the linear
	// layers, the embeddings and the output head): F32 (also the zero
	// value), or BF16 or Q8_0 for inference in less memory and, since
	// decoding is bound by the bytes it reads, faster. Products still
	// accumulate in float32; norms, convolutions and the SSM and retention
	// parameters stay F32, and so does a matrix Q8_0 cannot hold (columns
	// not a multiple of Q8Block). A model with low-precision weights does
	// not train (Info.Trainable is false).
	Weights DType
}

// WeightDType returns the storage Weights selects: F32 when unset.
func (o BuildOptions) WeightDType() DType {
	if o.Weights == Invalid {
		return F32
	}
	return o.Weights
}

// CheckWeights returns an error wrapping ErrUnsupported unless d is a
// storage of weight matrices BuildOptions.Weights takes (Invalid, F32,
// BF16, Q8_0).
func CheckWeights(d DType) error {
	switch d {
	case Invalid, F32, BF16, Q8_0:
		return nil
	}
	return fmt.Errorf("weights in %s: want F32, BF16 or Q8_0: %w", d, ErrUnsupported)
}

// BackendName returns the name of the backend the options select.
func (o BuildOptions) BackendName() string {
	switch {
	case o.On != nil:
		return o.On.Name()
	case o.Backend == "":
		return "cpu"
	}
	return o.Backend
}

// OpenBackend returns On, or a new backend registered under BackendName()
// with BackendOptions.
func (o BuildOptions) OpenBackend() (Backend, error) {
	if o.On != nil {
		return o.On, nil
	}
	return NewBackend(o.BackendName(), o.BackendOptions)
}

// Mode is a way of computing a model over a sequence. The three modes of a
// model give the same logits up to rounding.
type Mode uint8

const (
	// Parallel computes every position at once (the training form; its
	// memory grows with T² for retention models).
	Parallel Mode = iota
	// Chunkwise computes blocks of Form.Chunk tokens in parallel and carries
	// a recurrent state from block to block: memory linear in T.
	Chunkwise
	// Recurrent computes one token at a time, as Step does.
	Recurrent
)

// String returns the mode's name as the CLI spells it.
func (m Mode) String() string {
	switch m {
	case Parallel:
		return "parallel"
	case Chunkwise:
		return "chunkwise"
	case Recurrent:
		return "recurrent"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode reads a mode's name.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Parallel, Chunkwise, Recurrent} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("mode %q: want parallel, chunkwise or recurrent: %w", s, ErrConfig)
}

// Form selects how Forward and Prefill compute: the mode, and for Chunkwise
// the block size. The zero Form is Parallel.
type Form struct {
	Mode Mode
	// Chunk is the number of tokens per block in Chunkwise mode; 0 means
	// the model's default. Other modes ignore it.
	Chunk int
}

// Validate reports a form out of its domain, wrapping ErrConfig.
func (f Form) Validate() error {
	if f.Mode > Recurrent {
		return fmt.Errorf("%s: %w", f.Mode, ErrConfig)
	}
	if f.Chunk < 0 {
		return fmt.Errorf("chunk %d: want 0 (the model's default) or more: %w", f.Chunk, ErrConfig)
	}
	return nil
}

// Parameter is one named tensor of a model in this process. Name is the
// checkpoint's name ("backbone.layers.0.mixer.in_proj.weight"), so a
// model's parameters map one to one onto a safetensors file.
type Parameter struct {
	Name  string
	Value Tensor
}

// ParamInfo describes a parameter without holding it: what a model in
// another process can report.
type ParamInfo struct {
	Name  string
	DType DType
	Shape Shape
}

// HostTensor is a tensor's elements in host memory, little-endian, with its
// name, dtype and shape: how parameter values and optimizer state cross
// process boundaries. len(Data) == DType.Bytes(Shape.NumElements()).
type HostTensor struct {
	Name  string
	DType DType
	Shape Shape
	Data  []byte
}

// Info is what a model is and can do, as data, so that a proxy for a model
// in another process can answer it without type assertions.
type Info struct {
	// Arch is the registered architecture name.
	Arch string
	// Backend is the name of the backend that holds the parameters.
	Backend string
	// Threads is that backend's parallelism.
	Threads int
	// Plugin names the plugin serving the model; empty in process.
	Plugin string
	// Modes lists the modes Forward and Prefill accept; Parallel and
	// Recurrent are always among them.
	Modes []Mode
	// Trainable reports that the model learns: train.Stepper accepts it
	// (an in-process model implements Trainable, a plugin's model
	// TrainStepper).
	Trainable bool
	// Local reports that the parameters are tensors of this process: the
	// model implements LocalModel.
	Local bool
	// Weights is the storage of the weight matrices (BuildOptions.Weights):
	// F32, BF16 or Q8_0; Invalid from a model that does not say.
	Weights DType
	// Snapshots reports that the model's states can be saved, restored and
	// copied (StateSaver works: Snapshot, Restore, CopyState). A proxy for
	// a model in another process has StateSaver's methods whatever its
	// model can do; this says whether they work.
	Snapshots bool
	// Packed reports that Forward (in every mode), Prefill (in the
	// parallel form) and LossAndGrad take sequences of different lengths,
	// and LossAndGrad a Batch's document starts (packed.go). After such a
	// Prefill each sequence continues from its own position (StateLens).
	Packed bool
}

// Supports reports whether Forward and Prefill accept mode m.
func (i Info) Supports(m Mode) bool {
	for _, have := range i.Modes {
		if have == m {
			return true
		}
	}
	return false
}

// State is the recurrent cache of a model for a batch of sequences: what
// Step needs to continue decoding (conv and SSM states for Mamba, retention
// states for RetNet). Its size does not grow with the sequence length.
type State interface {
	// Batch returns the number of sequences.
	Batch() int
	// Len returns the number of tokens consumed per sequence so far; after
	// a Prefill of sequences of different lengths, the most any has
	// (StateLens gives each).
	Len() int
	// Reset empties the state so that decoding starts afresh.
	Reset() error
	// Close releases the state; it must not be used afterwards. Closing
	// twice is harmless.
	Close() error
}

// Model is a language model. Implementations: the built-in architectures
// (in process), a plugin client (the model lives in another process and
// every call is one request), and the Python binding's wrapper. Methods
// taking a context honour cancellation between layers; a model is not safe
// for concurrent use.
//
// Token ids are given as one []int32 per sequence; all sequences in a batch
// have the same length, except in the calls a model with Info.Packed lets
// take several lengths. Tensors a model returns are on a backend of the
// calling process (for a plugin model, the host's CPU backend).
type Model interface {
	// Config returns the model's configuration.
	Config() Config
	// Info reports the model's architecture, backend and capabilities.
	Info() Info
	// Params describes every parameter, with its checkpoint name, in a
	// fixed order.
	Params() []ParamInfo
	// ReadParams returns the values of the named parameters (all of them,
	// in the order of Params, when names is empty).
	ReadParams(ctx context.Context, names []string) ([]HostTensor, error)
	// WriteParams overwrites parameters with values of their own dtype and
	// shape.
	WriteParams(ctx context.Context, values []HostTensor) error
	// Forward runs whole sequences from an empty state in form f and
	// returns the logits [B,T,V].
	Forward(ctx context.Context, ids [][]int32, f Form) (Tensor, error)
	// NewState returns an empty recurrent state for batch sequences.
	NewState(batch int) (State, error)
	// Prefill runs the sequences in form f, continuing from s and advancing
	// it, and returns the logits [B,T,V]. Step can continue from s
	// afterwards exactly.
	Prefill(ctx context.Context, s State, ids [][]int32, f Form) (Tensor, error)
	// Step feeds one token per sequence through the recurrent form,
	// advancing s, and returns the logits [B,V]. The returned tensor belongs
	// to s and is overwritten by the next Step on s, so that decoding
	// allocates nothing per token.
	Step(ctx context.Context, s State, ids []int32) (Tensor, error)
	// Close releases the model (for a plugin model, its copy in the plugin
	// process). Closing twice is harmless.
	Close() error
}

// Batch is one training batch: Inputs[b][t] is followed by Targets[b][t]
// (the next token). A target equal to IgnoreIndex adds nothing to the loss.
// Rows have one length, unless the model's Info.Packed is set (packed.go).
type Batch struct {
	Inputs, Targets [][]int32
	// Starts, when not nil, holds for each row the positions at which a
	// new document begins (increasing, inside (0, len(Inputs[b]))): the
	// model's state is reset there, so that no position reads an earlier
	// document. Only a model whose Info.Packed is set takes it.
	Starts [][]int
}

// IgnoreIndex is the target value that is left out of the loss, as in
// PyTorch's cross_entropy.
const IgnoreIndex int32 = -100
