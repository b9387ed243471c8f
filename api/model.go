package api

import "context"

// Config is an architecture's hyper-parameters. Each architecture has its own
// concrete type, a struct that encoding/json marshals into the config.json the
// toolkit writes next to saved weights.
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

// Architecture makes models of one kind. Implementations register themselves
// with RegisterArchitecture from an init function.
type Architecture interface {
	// Name returns the registered name.
	Name() string
	// DefaultConfig returns a small, valid configuration, good for tests and
	// for training from scratch.
	DefaultConfig() Config
	// ParseConfig reads a config.json in any of the forms the architecture
	// accepts (Hugging Face, the original repository's, the toolkit's own).
	ParseConfig(configJSON []byte) (Config, error)
	// New builds a model with freshly initialised parameters on b, drawn
	// from a generator seeded with seed (the same seed gives the same
	// weights).
	New(cfg Config, b Backend, seed int64) (Model, error)
}

// UninitializedBuilder is implemented by architectures that can build a
// model whose parameters are allocated as zeros instead of drawn, for a
// loader that overwrites every parameter from a checkpoint
// (checkpoint.LoadModel uses it when the architecture has it): building is
// then a matter of allocation, not of a random draw per weight. Everything
// the configuration determines (rotary angles, decays) is set as New sets
// it.
type UninitializedBuilder interface {
	NewUninitialized(cfg Config, b Backend) (Model, error)
}

// Parameter is one named tensor of a model. Name is the checkpoint's name
// ("backbone.layers.0.mixer.in_proj.weight"), so a model's parameters map
// one to one onto a safetensors file.
type Parameter struct {
	Name  string
	Value Tensor
}

// State is the recurrent cache of a model for a batch of sequences: what
// Step needs to continue decoding (conv and SSM states for Mamba, retention
// states for RetNet). Its size does not grow with the sequence length.
type State interface {
	// Batch returns the number of sequences.
	Batch() int
	// Len returns the number of tokens consumed per sequence so far.
	Len() int
	// Reset empties the state so that decoding starts afresh.
	Reset()
}

// Model is a language model on a backend. Implementations: the built-in
// architectures (in process), a plugin client (out of process), and the
// Python binding's wrapper. Methods taking a context honour cancellation
// between layers.
//
// Token ids are given as one []int32 per sequence; all sequences in a batch
// have the same length.
type Model interface {
	// Config returns the model's configuration.
	Config() Config
	// Backend returns the backend that holds the parameters.
	Backend() Backend
	// Parameters returns every parameter with its checkpoint name, in a
	// fixed order. The tensors are the model's own: writing into them
	// changes the model (this is how checkpoints are loaded).
	Parameters() []Parameter
	// Forward runs the parallel (training) form over whole sequences and
	// returns the logits [B,T,V].
	Forward(ctx context.Context, ids [][]int32) (Tensor, error)
	// NewState returns an empty recurrent state for batch sequences.
	NewState(batch int) (State, error)
	// Prefill runs the sequences through the model in a parallel or
	// chunkwise form, continuing from s and advancing it, and returns the
	// logits [B,T,V]. Step can continue from s afterwards exactly.
	Prefill(ctx context.Context, s State, ids [][]int32) (Tensor, error)
	// Step feeds one token per sequence through the recurrent form,
	// advancing s, and returns the logits [B,V]. The returned tensor belongs
	// to s and is overwritten by the next Step on s, so that decoding
	// allocates nothing per token.
	Step(ctx context.Context, s State, ids []int32) (Tensor, error)
}

// Batch is one training batch: Inputs[b][t] is followed by Targets[b][t]
// (the next token). A target equal to IgnoreIndex adds nothing to the loss.
type Batch struct {
	Inputs, Targets [][]int32
}

// IgnoreIndex is the target value that is left out of the loss, as in
// PyTorch's cross_entropy.
const IgnoreIndex int32 = -100

// Trainable is a model that computes its loss and gradients.
type Trainable interface {
	Model
	// LossAndGrad runs the parallel form on b, returns the mean
	// cross-entropy over the targets that are not IgnoreIndex (in nats), and
	// adds the loss's gradient to every parameter's gradient.
	LossAndGrad(ctx context.Context, b Batch) (float64, error)
	// Grads returns the accumulated gradients, with the names and in the
	// order of Parameters.
	Grads() []Parameter
	// ZeroGrad sets every gradient to zero.
	ZeroGrad()
}
