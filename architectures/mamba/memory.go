package mamba

import (
	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/memcount"
)

var _ api.MemoryEstimator = (*Config)(nil)

// Upper bounds of the tensors one pass allocates, for the allocation
// overhead (memcount.TensorOverhead each) in the Fixed part of the
// estimate: per layer, per dense link, per previous layer a link reads,
// and outside the layers. A training pass allocates at most three times as
// many (values, gradients and their temporaries).
const (
	tensorsPerLayer      = 24
	tensorsPerLink       = 8
	tensorsPerLinked     = 3
	tensorsOutsideLayers = 8
)

// scanBlock is the channel block of the CPU backend's selective scan,
// whose backward pass keeps per block the states of every token.
const scanBlock = 32

// EstimateMemory implements api.MemoryEstimator from the sizes alone: the
// parameters exactly (with those of the weight matrices, for the storage
// of low-precision weights), the activations by counting the tensors each
// op of the parallel form allocates (see api.ActivationBytes). It never
// panics; for a configuration that Validate refuses the figures mean
// nothing.
func (c *Config) EstimateMemory() api.MemoryEstimate {
	e := api.MemoryEstimate{
		Forward:    c.activations(false),
		Train:      c.activations(true),
		StateBytes: c.stateBytes(),
	}
	c.parameters().SetIn(&e)
	return e
}

// parameters counts the parameters build creates, and those of its weight
// matrices (nn.Scope.Matrix).
func (c *Config) parameters() memcount.Params {
	V, D, L := c.VocabSize, c.HiddenSize, c.NumHiddenLayers
	E, N, R, K := c.IntermediateSize, c.StateSize, c.TimeStepRank, c.ConvKernel
	var layer memcount.Params
	layer.Add(D)                 // norm
	layer.AddMatrix(2, E, D)     // in_proj [2E, D]
	layer.Add(E, K)              // conv1d
	layer.AddMatrix(1, R+2*N, E) // x_proj
	layer.AddMatrix(1, E, R)     // dt_proj.weight
	layer.Add(E)                 // dt_proj.bias
	layer.Add(E, N)              // A_log
	layer.Add(E)                 // D
	layer.AddMatrix(1, D, E)     // out_proj
	if c.UseBias {
		layer.Add(2, E) // in_proj.bias
		layer.Add(D)    // out_proj.bias
	}
	if c.UseConvBias {
		layer.Add(E)
	}
	var n memcount.Params
	n.AddMatrix(1, V, D) // embeddings
	n.AddN(int64(L), layer)
	if c.Dense.M > 0 {
		n.AddN(int64(L-1), c.Dense.Parameters(D, E)) // every layer but the first
	}
	n.Add(D) // norm_f
	if !c.TieWordEmbeddings {
		n.AddMatrix(1, V, D) // lm_head
	}
	return n
}

// activations counts the memory of a pass: Forward and Prefill at
// inference, or LossAndGrad when train.
//
// Inference counts, per token, every op output of m.run and m.mixer, and
// what Prefill adds (the conv window's concatenation and the final states).
// Training counts the same tensors twice (their values, kept by the tape,
// and their gradients), the temporaries of the gradients that several ops
// add into one tensor, the loss's gradient of the logits, and the selective
// scan's backward workspace: a backend may keep every token's state, E*N
// floats per token and layer (the CPU backend keeps them per block of 32
// channels, with partial sums of dB and dC per block and token).
func (c *Config) activations(train bool) api.ActivationBytes {
	const f32 = 4
	V, D, L := c.VocabSize, c.HiddenSize, c.NumHiddenLayers
	E, N, R, K := c.IntermediateSize, c.StateSize, c.TimeStepRank, c.ConvKernel
	M := c.Dense.M
	targetH := M > 0 && c.DenseTarget == TargetH
	links := int64(0) // layers with a dense link
	if M > 0 {
		links = int64(max(L-1, 0))
	}
	linked := memcount.SumMin(M, L) // previous layers summed over the layers

	// act: floats per token of the tensors that gradients flow through
	// (counted twice in training); tok, seq: other floats per token and
	// per sequence; fixed: bytes per pass.
	var act, tok, seq, fixed memcount.Count
	act.Add(2, D) // embedding, norm_f
	act.Add(V)    // logits
	var layer memcount.Count
	layer.Add(3, D)     // norm, out_proj, residual add
	layer.Add(11, E)    // in_proj (2E), x, z, conv, silu, dt_proj, softplus, y, silu(z), y*silu(z)
	layer.Add(2, R+2*N) // x_proj and its three slices
	if targetH {
		layer.Add(E, N) // the layer's own states
	}
	act.AddN(layer.Value(), L)
	act.AddN(memcount.Mul(c.Dense.GateActivations(D, E), links))
	if targetH {
		act.AddN(linked, E, N) // the sum of the previous states and its gating
	} else if M > 0 {
		// FuseActivations is linear in the number of previous layers.
		f0, f1 := c.Dense.FuseActivations(E, 0), c.Dense.FuseActivations(E, 1)
		act.AddN(memcount.Mul(f0, links))
		act.AddN(memcount.Mul(max(f1-f0, 0), linked))
	}
	fixed.Add(L, 2, E, N, f32) // A = -exp(A_log)
	tok.AddN(act.Value(), 1)
	tok.Add(3) // ids: host slices and tensor
	if train {
		tok.AddN(act.Value(), 1) // the gradients
		tok.Add(V)               // the loss's saved gradient of the logits
		tok.Add(4)               // per-row losses; targets: host slices and tensor
		var extra memcount.Count
		extra.Add(3, E)     // second contributions to xz, the residual; x' feeds the scan and x_proj
		extra.Add(2, R+2*N) // the slices' contributions to dbc
		if M > 0 {
			extra.Add(M, E) // gradients added into the linked tensors
			if targetH {
				extra.Add(M+1, E, N)
			}
		}
		// The scan's backward workspace.
		blocks := (E + scanBlock - 1) / scanBlock
		extra.Add(blocks, scanBlock, N)
		extra.Add(2, blocks, N)
		tok.AddN(extra.Value(), L)
		var perSeq memcount.Count
		perSeq.Add(blocks, scanBlock, N)
		perSeq.Add(2, blocks, scanBlock*(4*N+2)+2*N)
		perSeq.Add(2, E, N+1) // float64 partial sums of dA and dD
		seq.AddN(perSeq.Value(), L)
		fixed.Add(L, 2, E, N, f32) // gradients of A and exp(A_log)
		// Gradients of the parameters that are not matrix products'
		// weights go through temporaries when they add to a gradient
		// already there (a tied embedding, or accumulation without
		// ZeroGrad): the embedding, and per layer the norm, the conv
		// weight (and its [E,K] view), the biases, A_log and D.
		fixed.Add(V, D, f32)
		fixed.Add(L, D+2*E*K+5*E+D+E*N+E, f32)
		if targetH {
			tok.AddN(links, E) // the gate's [B,T,E,1] view
		}
	} else {
		// Prefill: the conv window [prev; x], its last K-1 columns, and
		// the final SSM state.
		tok.Add(L, E)
		seq.Add(L, 2, K-1, E)
		seq.Add(L, E, N)
	}
	var tensors memcount.Count
	tensors.Add(L, tensorsPerLayer)
	tensors.AddN(links, tensorsPerLink)
	tensors.AddN(linked, tensorsPerLinked)
	tensors.Add(tensorsOutsideLayers)
	if train {
		tensors.AddN(tensors.Value(), 2)
	}
	fixed.AddN(tensors.Value(), memcount.TensorOverhead)
	return api.ActivationBytes{
		Fixed:       fixed.Value(),
		PerSequence: memcount.Mul(seq.Value(), f32),
		PerToken:    memcount.Mul(tok.Value(), f32),
	}
}

// stateBytes returns the bytes of one sequence's State: the conv window
// and SSM state of each layer, and the buffers of Step, each with its
// allocation overhead.
func (c *Config) stateBytes() int64 {
	V, D, L := c.VocabSize, c.HiddenSize, c.NumHiddenLayers
	E, N, R, K := c.IntermediateSize, c.StateSize, c.TimeStepRank, c.ConvKernel
	t := memcount.TensorBytes
	var n memcount.Count
	n.AddN(t(K-1, E), L)             // conv windows
	n.AddN(t(E, N), L)               // SSM states
	n.AddN(t(1), 2)                  // the step's ids: tensor and host bytes
	n.AddN(t(D), 3)                  // h, u, out
	n.AddN(t(2, E), 1)               // xz
	n.AddN(t(E), 7)                  // x, z, xc, xs, delta, y, gate
	n.AddN(t(R+2*N), 1)              // dbc
	n.AddN(t(R), 1)                  // dt
	n.AddN(t(N), 2)                  // bm, cm
	n.AddN(t(E, N), L)               // A = -exp(A_log) per layer
	n.AddN(t(K-2, E), 1)             // shift
	n.AddN(t(V), 1)                  // logits
	n.Add(L+7, memcount.HeaderBytes) // views
	if c.Dense.M > 0 {
		n.AddN(t(E), 1) // fused x'
		if c.DenseTarget == TargetH {
			n.AddN(t(E, N), L+1) // each layer's states, the injection
		} else {
			n.AddN(t(E), L)
		}
		d := c.Dense
		var link memcount.Count
		link.AddN(t(E), 2) // sel, acc
		if d.Gate == dense.GateSiluMLP {
			link.AddN(t(d.GateHidden(D)), 1)
		}
		if d.Gate != dense.GateNone {
			link.AddN(t(E), 1)
		}
		if d.Fusion == dense.FuseConcat {
			link.AddN(t(d.M+1, E), 1)
		}
		if d.Norm == dense.NormRMS {
			link.AddN(t(E), 1)
		}
		link.Add(2, memcount.HeaderBytes) // views
		n.AddN(link.Value(), L-1)
	}
	return n.Value()
}
