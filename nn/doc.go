// Package nn is the differentiable layer of densessm: an autograd tape over
// the kernels of an api.Backend, layers whose parameters carry the names a
// checkpoint uses, and seeded initialisers.
//
// # Tape and Vars
//
// A Var holds a tensor value and, when it takes part in training, a gradient
// of the same shape. Every op is a method of a Tape: it runs its forward
// kernel at once (eager execution) and, when the tape records and an input
// needs a gradient, remembers a backward closure. Tape.Backward(loss) runs
// the closures in reverse and adds the gradient of loss into every Var that
// needs one:
//
//	tp := nn.NewTape(b)
//	h := tp.Linear(x, w, bias)              // x [B,T,in], w [out,in] -> [B,T,out]
//	loss := tp.CrossEntropy(h, targets)     // scalar
//	tp.Backward(loss)                       // w.Grad() += dloss/dw
//
// Parameters are leaf Vars made by Params; they outlive tapes, and their
// gradients accumulate over Backward calls until ZeroGrad. Gradients of
// intermediate Vars belong to the tape and are released during Backward, as
// in PyTorch. NewInferenceTape gives a tape that records nothing, for
// evaluation and decoding.
//
// Shapes are written as [B,T,D] (batch, time, width) in the comments. A shape
// mismatch is a programmer error: ops panic with an error wrapping
// api.ErrShape (via api.Panicf), and public entry points turn the panic into
// an error with api.Recover. A Tape is not safe for concurrent use, and two
// tapes running Backward at once must not share parameters.
//
// # Fused kernels and references
//
// The model-family ops (CausalConv1d, SelectiveScan, Rotary, Retention)
// call the backend's fused kernels when it implements the optional
// interfaces api.ConvKernels, api.ScanKernels, api.RotaryKernels and
// api.RetentionKernels, and otherwise references composed of api.Kernels
// ops, which compute the same functions up to rounding and get their
// gradients from the tape; a backend with Kernels alone runs every model.
// Decode steps, which write into their own buffers outside any tape, call
// the same kernels through CausalConv1dInto, SelectiveScanInto, RotaryInto
// and RetentionInto.
//
// # Parameters and layers
//
// Params is an ordered collection of named parameters; a Scope builds names
// the way a checkpoint spells them (candle's VarBuilder):
//
//	p := nn.NewParams(b, seed)
//	s := p.Scope().Sub("backbone").Sub("layers").Index(0).Sub("mixer")
//	in := nn.NewLinear(s.Sub("in_proj"), d, 2*e, nn.Normal(0.02), nil)
//	// in.Weight is "backbone.layers.0.mixer.in_proj.weight", [2e, d]
//
// Each parameter is initialised from a generator seeded by the model seed and
// its own full name, so adding a parameter leaves the others unchanged.
package nn
