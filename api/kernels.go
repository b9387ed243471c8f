package api

// UnaryOp names an element-wise function for Kernels.Unary and UnaryGrad.
type UnaryOp uint8

// The element-wise functions.
const (
	OpNeg      UnaryOp = iota + 1 // -x
	OpExp                         // e^x
	OpLog                         // ln x
	OpSqrt                        // sqrt x
	OpRsqrt                       // 1/sqrt x
	OpSquare                      // x*x
	OpAbs                         // |x| (gradient sign(x), 0 at 0)
	OpSigmoid                     // 1/(1+e^-x)
	OpSilu                        // x*sigmoid(x); also called swish
	OpSoftplus                    // x if x > 20, else log1p(e^x) (PyTorch's threshold rule)
	OpTanh                        // tanh x
	OpRelu                        // max(x, 0) (gradient 0 at 0)
)

var unaryNames = [...]string{"", "neg", "exp", "log", "sqrt", "rsqrt", "square", "abs", "sigmoid", "silu", "softplus", "tanh", "relu"}

// UnaryOps lists every UnaryOp, for test suites.
func UnaryOps() []UnaryOp {
	ops := make([]UnaryOp, 0, len(unaryNames)-1)
	for op := OpNeg; int(op) < len(unaryNames); op++ {
		ops = append(ops, op)
	}
	return ops
}

func (op UnaryOp) String() string {
	if op > 0 && int(op) < len(unaryNames) {
		return unaryNames[op]
	}
	return "unary?"
}

// BinaryOp names an element-wise function of two tensors for Kernels.Binary.
type BinaryOp uint8

// The element-wise binary functions.
const (
	OpAdd BinaryOp = iota + 1 // a + b
	OpSub                     // a - b
	OpMul                     // a * b
	OpDiv                     // a / b
)

var binaryNames = [...]string{"", "add", "sub", "mul", "div"}

// BinaryOps lists every BinaryOp, for test suites.
func BinaryOps() []BinaryOp { return []BinaryOp{OpAdd, OpSub, OpMul, OpDiv} }

func (op BinaryOp) String() string {
	if op > 0 && int(op) < len(binaryNames) {
		return binaryNames[op]
	}
	return "binary?"
}

// ScanArgs are the inputs of the Mamba selective scan (specs/models.md §1,
// steps 6 and 7, without the z gate, and §4 target "h" for Inject), all F32:
//
//	X, Delta [B,T,E]   input x' and step size Δ (already softplus'ed)
//	A        [E,N]     A = -exp(A_log)
//	Bm, Cm   [B,T,N]   input-dependent B and C
//	D        [E]       skip weight, or nil for none
//	H0       [B,E,N]   initial state, or nil for zeros
//	Inject   [B,T,E,N] added to the state after each update (DenseMamba's
//	                   fused shallow states), or nil for none
type ScanArgs struct {
	X, Delta, A, Bm, Cm, D, H0 Tensor
	Inject                     Tensor // [B,T,E,N] added to the state after each update, or nil
}

// ScanGrads receives the gradients of SelectiveScanGrad. Each field has the
// shape of the ScanArgs field of the same name; a nil field is not computed.
// D, H0 and Inject must be nil when the ScanArgs field is nil.
type ScanGrads struct {
	X, Delta, A, Bm, Cm, D, H0 Tensor
	Inject                     Tensor // [B,T,E,N]
}

// RetentionArgs are the inputs of a retention kernel (specs/models.md §2),
// all F32 and per head h:
//
//	Q, K [B,H,T,dk]   rotated queries and keys (K already scaled by dk^-0.5)
//	V    [B,H,T,dv]
//	S0   [B,H,dk,dv]  chunkwise and recurrent forms: the state carried in
//	                  from the Offset tokens before, or nil for zeros (and
//	                  then Offset must be 0); must be nil for the parallel
//	                  form. At Offset 0 the carried term is multiplied by
//	                  sqrt(s_{-1}/s_0) = 0, so S0 has no effect there.
//	Gamma [H]         decay gamma_h in (0,1)
//	Offset            absolute position of the first token (0 for a fresh
//	                  sequence); positions are p = Offset + t
//	Chunk             chunkwise form: tokens per chunk (>= 1); the last
//	                  chunk may be shorter; the other forms ignore it
//
// With s_p = sum_{j=0..p} gamma^j, the recurrent and chunkwise forms compute
//
//	S_p = S_{p-1} * gamma * sqrt(s_{p-1}/s_p) + k_p^T v_p / sqrt(s_p)
//	o_p = q_p S_p                    (S_{Offset-1} = S0)
//
// and the chunkwise form gives the same o and final state as the recurrent
// form up to rounding, computing each chunk with matrix products. The
// parallel form (Offset 0, no state) computes the official DenseSSM code's
// (torchscale 0.3.0 divides each row by clamp(|sum_m A[n,m]|, min 1)
// instead: another positive per-row scalar)
//
//	D[n,m] = gamma^(n-m) / sqrt(s_n) for m <= n, else 0
//	A = (Q K^T) * D
//	A[n,:] /= clamp(sum_m |A[n,m]|, 1, 5e4)   (no gradient through this)
//	O = A V
//
// which differs from the recurrent form only by one positive scalar per row;
// the group norm that follows in every model removes it.
type RetentionArgs struct {
	Q, K, V, S0 Tensor
	Gamma       []float32
	Offset      int
	Chunk       int
}

// RetentionGrads receives the gradients of a retention kernel; each field
// has the shape of the RetentionArgs field of the same name, and a nil field
// is not computed. S0 must be nil when RetentionArgs.S0 is.
type RetentionGrads struct {
	Q, K, V, S0 Tensor
}

// RetentionForm selects how retention is computed.
type RetentionForm uint8

// The three retention forms.
const (
	RetentionParallel  RetentionForm = iota + 1 // masked matmul over the whole sequence
	RetentionChunkwise                          // parallel within chunks, recurrent across
	RetentionRecurrent                          // one token at a time
)

func (f RetentionForm) String() string {
	switch f {
	case RetentionParallel:
		return "parallel"
	case RetentionChunkwise:
		return "chunkwise"
	case RetentionRecurrent:
		return "recurrent"
	}
	return "retention?"
}

// Kernels is the op set every backend implements. The model-family
// kernels (the Mamba convolution and scan, rotary positions, retention) are
// not part of it: they are the optional fused-kernel interfaces of
// fused.go, which package nn replaces with references composed of Kernels
// ops when a backend lacks them. Conventions, for Kernels and the fused
// kernels alike:
//
//   - Destination first: the caller allocates every output (so that a decode
//     step can reuse buffers and allocate nothing). Outputs never alias
//     inputs unless a method says so.
//   - All tensors are F32 unless a method says otherwise; ids and targets are
//     I32.
//   - Gradient kernels (…Grad) overwrite their outputs; they never
//     accumulate. A nil gradient output is skipped.
//   - Sequence kernels accept T = 0 (empty outputs; final states equal the
//     initial ones, and their gradients pass dsT/dhT through).
//   - Arguments are checked. A shape mismatch, or a tensor given where the
//     kernel takes none (a state for the parallel form, a gradient output
//     whose input is nil), panics with an error wrapping ErrShape; a wrong
//     dtype with ErrDType; an index or scalar outside its range (an id or
//     target, Chunk < 1, a negative Offset, Offset > 0 without a state, a
//     gamma outside (0,1)) with ErrOutOfRange.
type Kernels interface {
	// Fill sets every element of dst to v.
	Fill(dst Tensor, v float32)
	// Copy copies src into dst; both have the same dtype and element count
	// (the shapes may differ).
	Copy(dst, src Tensor)
	// Convert converts element-wise between dtypes, same element count:
	// F32, F16, BF16, F64, I32 and I64 to F32, and F32 to F16, BF16 and F64,
	// every narrowing rounding to nearest even (an F64 beyond float32's range
	// becomes ±Inf); and I64 to I32 for token ids (a value outside int32
	// panics with ErrOutOfRange). Other pairs panic with ErrUnsupported.
	Convert(dst, src Tensor)

	// Unary sets dst = op(x); same shape. dst may be x. Each result is
	// within 2 ulp of the exactly rounded float32 value (the CPU backend's
	// vector exp is within 1.02 ulp).
	Unary(op UnaryOp, dst, x Tensor)
	// UnaryGrad sets dx = dy * op'(x); all the same shape.
	UnaryGrad(op UnaryOp, dx, x, dy Tensor)
	// Affine sets dst = x*scale + shift; same shape. dst may be x.
	Affine(dst, x Tensor, scale, shift float32)
	// Binary sets dst = a op b with NumPy broadcasting: a and b are aligned
	// at their last axis, sizes must match or be 1, and dst has the
	// broadcast shape. dst may be a or b when it has that one's shape.
	Binary(op BinaryOp, dst, a, b Tensor)
	// SumTo sets dst to the sum of x over the axes that broadcasting dst's
	// shape to x's shape would expand (the gradient of broadcasting): dst's
	// shape must broadcast to x's shape. A scalar or [1] dst sums everything.
	SumTo(dst, x Tensor)

	// MatMul sets dst = alpha * op(a) op(b) + beta * dst, where op(a) is a
	// [..., M, K] (or a [..., K, M] read transposed when transA), op(b) is b
	// [..., K, N] (or [..., N, K] when transB), and dst is [..., M, N]. The
	// leading (batch) axes of a, b and dst are equal, or one of a and b has
	// rank 2 and is used for every batch. With beta == 0, dst's old contents
	// are ignored (NaN in dst does not propagate).
	MatMul(dst, a, b Tensor, transA, transB bool, alpha, beta float32)

	// Permute sets dst to src with its axes reordered: dst axis i is src axis
	// perm[i]. dst's shape is the permuted shape. Any dtype.
	Permute(dst, src Tensor, perm ...int)
	// Slice copies the window src[..., start:start+n, ...] along axis (n =
	// dst's size on that axis) into dst; the other axes match. Any dtype.
	Slice(dst, src Tensor, axis, start int)
	// SetSlice copies src into the window dst[..., start:start+n, ...] along
	// axis (n = src's size on that axis) and leaves the rest of dst as it
	// was. It is Slice's inverse, used for concatenation and Slice's
	// gradient. Any dtype.
	SetSlice(dst, src Tensor, axis, start int)

	// RMSNorm sets dst = x * rsqrt(mean(x^2) + eps) * w over the last axis;
	// x, dst [..., D], w [D] or nil for no weight.
	RMSNorm(dst, x, w Tensor, eps float32)
	// RMSNormGrad sets dx [..., D] and dw [D] (summed over rows) from dy.
	// dw must be nil when w is.
	RMSNormGrad(dx, dw, x, w, dy Tensor, eps float32)

	// Softmax sets dst = softmax(x) over the last axis.
	Softmax(dst, x Tensor)
	// SoftmaxGrad sets dx from y = softmax(x) and dy.
	SoftmaxGrad(dx, y, dy Tensor)
	// LogSoftmax sets dst = log(softmax(x)) over the last axis.
	LogSoftmax(dst, x Tensor)
	// LogSoftmaxGrad sets dx from y = logsoftmax(x) and dy.
	LogSoftmaxGrad(dx, y, dy Tensor)
	// CrossEntropy sets, for logits [N,V] and I32 targets [N], the per-row
	// loss [N] = logsumexp(logits[n]) - logits[n, target[n]] and, when
	// dlogits [N,V] is not nil, its gradient softmax(logits[n]) -
	// onehot(target[n]). Rows whose target equals ignoreIndex get loss 0 and
	// gradient 0; any other target outside [0,V) panics with ErrOutOfRange.
	CrossEntropy(loss, dlogits, logits, targets Tensor, ignoreIndex int32)

	// Gather sets dst[i..., :] = table[ids[i...], :] for table [V,D], I32 ids
	// of any shape S, and dst [S..., D]. An id outside [0,V) panics with
	// ErrOutOfRange.
	Gather(dst, table, ids Tensor)
	// GatherGrad sets dtable [V,D] to zero and then adds each row of dy
	// [S..., D] into the row its id names (the scatter-add gradient).
	GatherGrad(dtable, ids, dy Tensor)
}
