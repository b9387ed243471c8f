package api

import (
	"context"
	"fmt"
	"math"
)

// The optional capabilities of models, architectures and tensors, in one
// place. Code that needs one asks for it by these names (or reads
// Model.Info, which reports the model's as data so that a proxy for a
// model in another process can answer).
//
// Backends have optional capabilities too: KernelNamer below, and the
// fused model-family kernels ConvKernels, ScanKernels, RotaryKernels and
// RetentionKernels (fused.go), for which package nn falls back to
// references composed of Kernels ops when a backend lacks them.

// LocalModel is a model whose parameters are tensors of this process
// (Info().Local): the built-in architectures on an in-process backend.
type LocalModel interface {
	Model
	// Backend returns the backend that holds the parameters.
	Backend() Backend
	// Parameters returns every parameter with its checkpoint name, in the
	// order of Params. The tensors are the model's own: writing into them
	// changes the model.
	Parameters() []Parameter
}

// Trainable is an in-process model that computes its loss and gradients.
// Training code outside the model uses TrainStepper, which every trainable
// model offers (train.Stepper adapts a Trainable).
type Trainable interface {
	LocalModel
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

// TrainStepper runs whole optimisation steps: the loss and gradients of
// some micro-batches, the checks, clipping and the optimizer's update, in
// one call, so that a model in another process trains where it lives.
type TrainStepper interface {
	// TrainStep runs one step. A loss or gradient that is not finite fails
	// it, wrapping ErrNotFinite, before any parameter changes.
	TrainStep(ctx context.Context, req TrainStepRequest) (TrainStepResult, error)
	// OptimizerState returns the optimizer's state (empty before the first
	// step).
	OptimizerState(ctx context.Context) (OptimizerState, error)
	// SetOptimizerState replaces the optimizer's state, building the
	// optimizer cfg describes.
	SetOptimizerState(ctx context.Context, cfg OptimizerConfig, s OptimizerState) error
}

// TrainStepRequest is one optimisation step.
type TrainStepRequest struct {
	// Batches are the micro-batches; their gradients are averaged.
	Batches []Batch
	// Optimizer describes the optimizer; it must stay the same from step to
	// step of one run.
	Optimizer OptimizerConfig
	// LR is this step's learning rate (the schedule's value).
	LR float64
	// ClipNorm scales the gradients down to this global norm when they are
	// above it; 0 turns clipping off.
	ClipNorm float64
}

// TrainStepResult is what a step measured.
type TrainStepResult struct {
	// Loss is the mean of the micro-batches' losses, in nats per token.
	Loss float64
	// GradNorm is the global norm of the gradients before clipping.
	GradNorm float64
}

// OptimizerState is an optimizer's state: its buffers (named slot/param,
// as "exp_avg/lm_head.weight") and the number of updates it has made.
type OptimizerState struct {
	Steps   int64
	Tensors []HostTensor
}

// Optimizer names.
const (
	AdamW = "adamw"
	SGD   = "sgd"
)

// OptimizerConfig describes an optimizer as data: what a checkpoint
// records and what a model in another process needs to rebuild it.
type OptimizerConfig struct {
	// Name is AdamW (the default) or SGD.
	Name string `json:"name"`
	// LR is the peak learning rate; the schedule scales it.
	LR float64 `json:"lr"`
	// WeightDecay is AdamW's decoupled decay (p -= lr·wd·p before the
	// update) or SGD's L2 term (g += wd·p), applied to the parameters
	// train.Decays selects.
	WeightDecay float64 `json:"weight_decay"`
	// DecayAll applies weight decay to every parameter. By default norms,
	// biases, embeddings and Mamba's A_log and D are left out, as in
	// GPT-style and Mamba training recipes.
	DecayAll bool `json:"decay_all,omitempty"`
	// Beta1, Beta2 and Eps are AdamW's moment decays and denominator term.
	Beta1 float64 `json:"beta1,omitempty"`
	Beta2 float64 `json:"beta2,omitempty"`
	Eps   float64 `json:"eps,omitempty"`
	// Momentum and Nesterov configure SGD.
	Momentum float64 `json:"momentum,omitempty"`
	Nesterov bool    `json:"nesterov,omitempty"`
}

// DirLoader is an architecture that loads model directories itself: a
// plugin's architecture, whose process maps the weights file instead of
// receiving it over the wire. checkpoint.LoadModel hands such directories
// over to it.
type DirLoader interface {
	LoadDir(ctx context.Context, dir string, opts DirLoadOptions) (Model, error)
}

// DirSaver is a model that saves itself into a directory where it lives (a
// plugin's model: its process writes the files, rather than sending every
// weight to the host). checkpoint.SaveModel hands such models over to it.
type DirSaver interface {
	// SaveDir writes config.json and model.safetensors, the weights stored
	// as storage, into dir.
	SaveDir(ctx context.Context, dir string, storage DType) error
}

// DirLoadOptions are the options of a checkpoint load that are data.
type DirLoadOptions struct {
	Build          BuildOptions
	AllowExtra     bool
	AllowNonFinite bool
}

// ConfigRecognizer is an architecture that can tell its config.json by its
// fields when its model_type does not name a registered architecture (the
// original state-spaces Mamba configs have none).
type ConfigRecognizer interface {
	RecognizesConfig(configJSON []byte) bool
}

// NameAliases is a model whose checkpoints in the wild name a tensor
// otherwise than the model's parameter (the original state-spaces Mamba
// files say backbone.embedding.weight where Hugging Face says
// backbone.embeddings.weight).
type NameAliases interface {
	// CheckpointAliases returns the other names, in order of preference, the
	// tensor of the parameter called name may have in a checkpoint.
	CheckpointAliases(name string) []string
}

// IgnoredCheckpointNames is a model whose checkpoints in the wild carry
// tensors that are not parameters and that it deliberately leaves unread:
// buffers it recomputes from its config, or names of tensors it has
// dropped (see checkpoint.LoadModel).
type IgnoredCheckpointNames interface {
	// IgnoresCheckpointTensor reports whether a checkpoint tensor of this
	// name, not a parameter of the model, is expected and may be skipped.
	IgnoresCheckpointTensor(name string) bool
}

// ForwardIntoModel is a Model whose parallel form writes its logits into a
// tensor the caller allocated, instead of a new one: the Python binding
// hands it memory outside the Go heap, which NumPy then owns without a
// copy.
type ForwardIntoModel interface {
	Model
	// ForwardInto computes Forward(ctx, ids, Form{}) into dst, an F32
	// tensor [B,T,V] on the model's backend; after an error dst holds
	// nothing meaningful.
	ForwardInto(ctx context.Context, dst Tensor, ids [][]int32) error
}

// HostFloat32s is a tensor whose float32 elements are host memory the
// caller may read and write directly (the CPU backend's F32 tensors).
type HostFloat32s interface {
	Tensor
	HostFloat32s() []float32
}

// HostInt32s is a tensor whose int32 elements are host memory.
type HostInt32s interface {
	Tensor
	HostInt32s() []int32
}

// KernelNamer is a backend that names the matrix kernel it picked for the
// machine ("avx512", "avx2", "generic"), for benchmark reports.
type KernelNamer interface {
	GEMMKernel() string
}

// Validate checks every field against its domain; the error names the
// field as the command line spells it and wraps ErrConfig.
func (c OptimizerConfig) Validate() error {
	bad := func(flag string, v float64, want string) error {
		return fmt.Errorf("--%s %g: want %s: %w", flag, v, want, ErrConfig)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch c.Name {
	case AdamW:
		if !(c.Beta1 >= 0 && c.Beta1 < 1) {
			return bad("beta1", c.Beta1, "0 <= beta1 < 1")
		}
		if !(c.Beta2 >= 0 && c.Beta2 < 1) {
			return bad("beta2", c.Beta2, "0 <= beta2 < 1")
		}
		if !(c.Eps > 0) || !finite(c.Eps) {
			return bad("eps", c.Eps, "a finite eps > 0")
		}
	case SGD:
		if !(c.Momentum >= 0 && c.Momentum < 1) {
			return bad("momentum", c.Momentum, "0 <= momentum < 1")
		}
		if c.Nesterov && c.Momentum == 0 {
			return fmt.Errorf("--nesterov needs --momentum > 0: %w", ErrConfig)
		}
	default:
		return fmt.Errorf("--optimizer %q: want %s or %s: %w", c.Name, AdamW, SGD, ErrConfig)
	}
	if !(c.LR > 0) || !finite(c.LR) {
		return bad("lr", c.LR, "a finite learning rate > 0")
	}
	if !(c.WeightDecay >= 0) || !finite(c.WeightDecay) {
		return bad("weight-decay", c.WeightDecay, "a finite weight decay >= 0")
	}
	return nil
}

// StateTuner is a model whose initial state can be learned while its
// weights stay frozen: state tuning, the prefix-tuning of recurrent models
// (docs/state.md). The state learnt is an ordinary one-sequence state: it
// is saved as a snapshot (StateSaver) and decoding continues from it.
type StateTuner interface {
	Model
	// StateLossAndGrad runs the parallel form on b, every row (and, with
	// b.Starts, every document) starting from init, a one-sequence state
	// of this model (at its position: tokens after it are rotated and
	// normalised as if they followed init.Len() tokens; a retention
	// state at position 0 has no part in what follows, and RetNet refuses
	// it with ErrConfig), and returns the mean cross-entropy over
	// the targets that are not IgnoreIndex with its gradient with respect
	// to each of init's tensors, named and shaped as in init's snapshot
	// (StateSaver.SaveState). It neither changes init nor the weights,
	// nor their accumulated gradients.
	StateLossAndGrad(ctx context.Context, init State, b Batch) (float64, []HostTensor, error)
}
