package api

import "math"

// MemoryEstimate is the memory a model of one configuration needs on its
// backend, in bytes, worked out from the configuration alone: a program can
// compare it with the memory it has and refuse a configuration that cannot
// fit (a vocabulary of 10^12 tokens, 10^5 layers of width 65536) before
// anything is allocated, instead of dying in the allocator.
//
// Every figure, and every figure the methods compute from them, saturates
// at math.MaxInt64 instead of overflowing: an absurd configuration gives
// "more than any machine has", never a wrapped small number.
type MemoryEstimate struct {
	// Parameters is the number of parameters: exactly the sum of the
	// element counts of the tensors of Model.Parameters().
	Parameters int64
	// MatrixParameters is the part of Parameters in weight matrices: the
	// parameters that BuildOptions.Weights stores in low precision (the
	// weights of the linear layers, the embedding tables and the output
	// head; nn.Scope.Matrix makes them). A model built with BF16 weights
	// holds them in 2 bytes each.
	MatrixParameters int64
	// Q8Parameters is the part of MatrixParameters in the matrices whose
	// number of columns is a multiple of Q8Block: those a model built with
	// Q8_0 weights holds in Q8_0, Q8BlockBytes per Q8Block parameters. Its
	// other matrices stay F32.
	Q8Parameters int64
	// WeightBytes is the memory of the parameters in float32, 4 bytes
	// each: the weights of a model built with F32 weights (the default,
	// and the only storage that trains), and the size of each of the
	// gradients and optimizer tensors of training. WeightBytesFor gives
	// the weights of a model built with BF16 or Q8_0 weights.
	WeightBytes int64
	// Forward is the working memory of a parallel Forward, or of a Prefill,
	// at inference: every activation, the logits [B,T,V] included.
	Forward ActivationBytes
	// Train is the working memory of LossAndGrad: the activations the tape
	// keeps for the backward pass, the gradients it computes for them, the
	// loss's gradient of the logits and the kernels' backward workspace.
	// The gradients of the parameters are not included: they take
	// WeightBytes more (a model trains with F32 weights), and live as long
	// as the model trains.
	Train ActivationBytes
	// StateBytes is the memory of the recurrent State of one sequence
	// (Model.NewState), with the buffers the first Step makes in it.
	StateBytes int64
}

// ActivationBytes is the working memory of one pass over a batch of B
// sequences of T tokens each:
//
//	Fixed + B*PerSequence + B*T*PerToken + B*T*T*PerTokenPair
//
// bytes. It counts every tensor the pass allocates other than the
// parameters and their gradients, as if none were released before the pass
// returns, so it bounds the pass's peak from above whatever the backend
// frees early (the pure-Go CPU backend leaves its tensors to the garbage
// collector, so there the bound is close to what a pass allocates in all).
// Each tensor counts with what allocating it costs beyond its data (the Go
// heap's rounding up to a size class or whole pages, the header). The
// kernels' own workspace is counted where it grows with the batch (the
// selective scan's backward pass, the T*T scores of a retention call);
// scratch that a backend keeps in pools across calls (the packing buffers
// of matrix products) is the backend's own and is not.
type ActivationBytes struct {
	// Fixed is the part that depends on neither B nor T: tensors computed
	// from the parameters alone (in training, with the temporaries their
	// gradients pass through), and the allocation overhead of the pass's
	// tensors.
	Fixed int64
	// PerSequence is the part per sequence whatever its length: the
	// recurrent states a Prefill hands on.
	PerSequence int64
	// PerToken is the part per token of the batch.
	PerToken int64
	// PerTokenPair is the part per pair of positions (query, key) of one
	// sequence: the score matrix of one parallel retention call (and its
	// gradient in training), which grows as T*T and is released before
	// the next call. It is 0 where nothing grows faster than T (Mamba).
	PerTokenPair int64
}

// Bytes returns the working memory of a pass over batch sequences of
// tokens tokens each, saturating at math.MaxInt64. Negative sizes count as
// 0.
func (a ActivationBytes) Bytes(batch, tokens int) int64 {
	b, t := max(int64(batch), 0), max(int64(tokens), 0)
	return satAdd(
		a.Fixed,
		satMul(b, a.PerSequence),
		satMul(satMul(b, t), a.PerToken),
		satMul(satMul(satMul(b, t), t), a.PerTokenPair),
	)
}

// ForwardBytes returns e.Forward.Bytes(batch, tokens): the working memory
// of a Forward or Prefill of batch sequences of tokens tokens.
func (e MemoryEstimate) ForwardBytes(batch, tokens int) int64 { return e.Forward.Bytes(batch, tokens) }

// TrainBytes returns e.Train.Bytes(batch, tokens): the working memory of a
// LossAndGrad on batch sequences of tokens tokens.
func (e MemoryEstimate) TrainBytes(batch, tokens int) int64 { return e.Train.Bytes(batch, tokens) }

// WeightBytesFor returns the memory of the parameters of a model built
// with the weight storage w (BuildOptions.Weights; Invalid is F32),
// saturating: for BF16, MatrixParameters in 2 bytes each; for Q8_0,
// Q8Parameters in Q8BlockBytes per Q8Block; every other parameter in 4
// bytes. For F32, and any w that is not a low-precision weight storage, it
// returns WeightBytes. An estimate that does not count its weight
// matrices (MatrixParameters and Q8Parameters 0) gives WeightBytes for
// every w: the float32 figure, an upper bound.
func (e MemoryEstimate) WeightBytesFor(w DType) int64 {
	var low, lowBytes int64
	switch w {
	case BF16:
		low = min(max(e.MatrixParameters, 0), max(e.Parameters, 0))
		lowBytes = satMul(low, 2)
	case Q8_0:
		low = min(max(e.Q8Parameters, 0), max(e.Parameters, 0))
		blocks := low / Q8Block
		if low%Q8Block != 0 {
			blocks++ // not whole blocks: an upper bound
		}
		lowBytes = satMul(blocks, Q8BlockBytes)
	}
	if low == 0 {
		return e.WeightBytes
	}
	return satAdd(satMul(e.Parameters-low, 4), lowBytes)
}

// InferenceBytes returns the whole memory of generating from batch prompts
// of tokens tokens each with a model of F32 weights: the parameters, batch
// States and the prefill's working memory (saturating). It is
// InferenceBytesFor(F32, batch, tokens).
func (e MemoryEstimate) InferenceBytes(batch, tokens int) int64 {
	return e.InferenceBytesFor(F32, batch, tokens)
}

// InferenceBytesFor is InferenceBytes for a model built with the weight
// storage w (see WeightBytesFor): its parameters take WeightBytesFor(w);
// the States and the working memory are the same whatever w.
func (e MemoryEstimate) InferenceBytesFor(w DType, batch, tokens int) int64 {
	return satAdd(e.WeightBytesFor(w), satMul(max(int64(batch), 0), e.StateBytes), e.ForwardBytes(batch, tokens))
}

// TrainingBytes returns the whole memory of a training step on batch
// sequences of tokens tokens each: the parameters, their gradients,
// optimizerCopies more tensors of the parameters' size (2 for Adam's
// moments, 0 for plain SGD) and LossAndGrad's working memory (saturating).
// A model trains with F32 weights only, so each of these tensors takes
// WeightBytes.
func (e MemoryEstimate) TrainingBytes(batch, tokens, optimizerCopies int) int64 {
	copies := satAdd(2, max(int64(optimizerCopies), 0))
	return satAdd(satMul(copies, e.WeightBytes), e.TrainBytes(batch, tokens))
}

// MemoryEstimator is implemented by the configurations whose architecture
// can estimate its models' memory (the built-in ones do).
type MemoryEstimator interface {
	// EstimateMemory returns the estimate for a model of this
	// configuration. It allocates nothing that grows with the model. The
	// figures are meaningful for a configuration that Validate accepts; for
	// any other the method still returns, with figures that are
	// non-negative but otherwise unspecified, and never panics.
	EstimateMemory() MemoryEstimate
}

// EstimateMemory returns cfg's memory estimate, and false when cfg does
// not implement MemoryEstimator.
func EstimateMemory(cfg Config) (MemoryEstimate, bool) {
	m, ok := cfg.(MemoryEstimator)
	if !ok {
		return MemoryEstimate{}, false
	}
	return m.EstimateMemory(), true
}

// satMul returns a*b for non-negative a and b, math.MaxInt64 when it
// overflows; a negative factor gives 0.
func satMul(a, b int64) int64 {
	switch {
	case a <= 0 || b <= 0:
		return 0
	case a > math.MaxInt64/b:
		return math.MaxInt64
	}
	return a * b
}

// satAdd returns the sum of the terms, negative terms counting as 0,
// math.MaxInt64 when it overflows.
func satAdd(terms ...int64) int64 {
	s := int64(0)
	for _, t := range terms {
		if t <= 0 {
			continue
		}
		if s > math.MaxInt64-t {
			return math.MaxInt64
		}
		s += t
	}
	return s
}
