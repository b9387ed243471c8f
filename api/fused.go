package api

// The fused kernels of the model families: optional interfaces next to
// Kernels. A backend may implement any of them (all, some or none); the
// CPU backend implements all four. Package nn asks for each with a type
// assertion on the backend (the tape ops Tape.CausalConv1d,
// Tape.SelectiveScan, Tape.Rotary and Tape.Retention, and the decode-step
// entry points nn.CausalConv1dInto, nn.SelectiveScanInto, nn.RotaryInto
// and nn.RetentionInto) and, when the backend does not implement one, runs
// a reference composed of Kernels ops instead: the same function up to
// rounding, with its gradients from the tape. So a new backend runs every
// model with Kernels alone and adds fused kernels where they pay, and a new
// architecture family adds an interface here (with a reference in nn)
// instead of a method every backend must implement.
//
// The fused kernels follow the conventions of Kernels (destination first,
// gradients overwrite, T = 0 accepted, arguments checked); their doc
// comments are the contract the references in nn implement too.

// ConvKernels is the fused depthwise causal convolution of Mamba.
type ConvKernels interface {
	// CausalConv1d computes the depthwise causal convolution of Mamba
	// (specs/models.md §1 step 2) with channels last: x, dst [B,T,C],
	// w [C,K], bias [C] or nil, prev [B,K-1,C] the K-1 inputs before t = 0
	// (oldest first), or nil for zeros:
	//	dst[b,t,c] = bias[c] + sum_{k<K} w[c,k] * xx[b, t+k, c]
	// where xx is prev followed by x along the time axis.
	CausalConv1d(dst, x, w, bias, prev Tensor)
	// CausalConv1dGrad sets the gradients dx [B,T,C], dw [C,K], dbias [C]
	// and dprev [B,K-1,C] from dy [B,T,C]; any of them may be nil. dprev
	// may be asked for when prev is nil (the gradient at the zero context).
	CausalConv1dGrad(dx, dw, dbias, dprev, x, w, prev, dy Tensor)
}

// ScanKernels is the fused selective scan of Mamba and DenseMamba.
type ScanKernels interface {
	// SelectiveScan runs the Mamba recurrence (see ScanArgs) for each batch
	// row, with the injection of DenseMamba's target "h" (specs/models.md
	// §4):
	//	h_t[e,n]  = exp(Delta_t[e] A[e,n]) h'_{t-1}[e,n] + Delta_t[e] Bm_t[n] X_t[e]
	//	h'_t[e,n] = h_t[e,n] + Inject_t[e,n]     (h'_t = h_t when Inject is nil)
	//	y_t[e]    = sum_n h'_t[e,n] Cm_t[n] + D[e] X_t[e]
	// with h'_{-1} = H0: the state carried from token to token, and read by
	// y, is the injected one. It sets y [B,T,E]; when hT is not nil, the
	// final carried state hT = h'_{T-1} [B,E,N] (H0, or zeros, when T = 0);
	// and when hs is not nil, every token's state before injection, hs
	// [B,T,E,N] with hs[b,t] = h_t (what a DenseMamba layer hands on to the
	// layers after it). hT may be the tensor H0: the state then advances
	// in place, as a decode step wants.
	SelectiveScan(y, hT, hs Tensor, in ScanArgs)
	// SelectiveScanGrad sets the gradients of the scan's inputs from dy
	// [B,T,E] and the gradients arriving at the other outputs: dhT [B,E,N]
	// at hT and dhs [B,T,E,N] at hs, either nil for zero.
	SelectiveScanGrad(g ScanGrads, in ScanArgs, dy, dhT, dhs Tensor)
}

// RotaryKernels is the fused rotation by position of RetNet's queries and
// keys.
type RotaryKernels interface {
	// Rotary rotates interleaved pairs of the last axis of x [..., T, d]
	// (d even) by position: the pair (2i, 2i+1) of row t becomes
	// (a cos φ - b sin φ, b cos φ + a sin φ) with φ = float32(offset+t) *
	// theta[i] (a float32 product, as torchscale computes it) and theta
	// [d/2]. inverse rotates by -φ, which is the gradient. dst may be x.
	Rotary(dst, x Tensor, theta []float32, offset int, inverse bool)
}

// RetentionKernels is the fused retention of RetNet and DenseRetNet in its
// three forms.
type RetentionKernels interface {
	// Retention computes retention in the given form (see RetentionArgs):
	// o [B,H,T,dv] and, for the chunkwise and recurrent forms when sT is not
	// nil, the state after the last token, sT [B,H,dk,dv]. sT may be in.S0:
	// the state is then advanced in place (a decode step does, to read and
	// write its state once).
	Retention(form RetentionForm, o, sT Tensor, in RetentionArgs)
	// RetentionGrad sets the gradients of Retention's inputs from do and,
	// for the chunkwise and recurrent forms, dsT (nil for zero).
	RetentionGrad(form RetentionForm, g RetentionGrads, in RetentionArgs, do, dsT Tensor)
}
