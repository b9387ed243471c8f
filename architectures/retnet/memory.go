package retnet

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
	tensorsPerLayer      = 32
	tensorsPerLink       = 8
	tensorsPerLinked     = 3
	tensorsOutsideLayers = 16
)

// EstimateMemory implements api.MemoryEstimator from the sizes alone: the
// parameters exactly (with those of the weight matrices, for the storage
// of low-precision weights), the activations by counting the tensors each
// op of the parallel and chunkwise forms allocates (see
// api.ActivationBytes). It never panics; for a configuration that
// Validate refuses the figures mean nothing.
func (c *Config) EstimateMemory() api.MemoryEstimate {
	e := api.MemoryEstimate{
		Forward:    c.activations(false),
		Train:      c.activations(true),
		StateBytes: c.stateBytes(),
	}
	c.parameters().SetIn(&e)
	return e
}

// parameters counts the parameters newRetNet or newDenseRetNet creates,
// and those of their weight matrices (nn.Scope.Matrix).
func (c *Config) parameters() memcount.Params {
	V, d, L := c.VocabSize, c.HiddenSize, c.NumHiddenLayers
	dqk, dv, ffn := c.QueryKeyDim, c.ValueDim, c.FFNDim
	var layer memcount.Params
	layer.Add(d) // the input norm
	if c.gau() {
		layer.AddMatrix(2, dqk, d) // q_proj, k_proj
		layer.AddMatrix(2, dv, d)  // to_hidden [2dv, d]: v and g
		layer.AddMatrix(1, d, dv)  // to_out
		layer.Add(c.safeHeadDim(dv))
		k, v := c.linkConfigs()
		layer.AddN(1, k.Parameters(d, dqk))
		layer.AddN(1, v.Parameters(d, dv))
	} else {
		layer.AddMatrix(2, d, d)   // q_proj, k_proj
		layer.AddMatrix(2, dv, d)  // v_proj, g_proj
		layer.AddMatrix(1, d, dv)  // out_proj
		layer.Add(d)               // final_layer_norm
		layer.AddMatrix(2, ffn, d) // fc1, gate
		layer.AddMatrix(1, d, ffn) // fc2
	}
	var n memcount.Params
	n.AddMatrix(1, V, d) // embed_tokens
	n.AddN(int64(L), layer)
	n.Add(d) // the final norm
	if !c.TieWordEmbeddings {
		n.AddMatrix(1, V, d) // the output head
	}
	return n
}

// safeHeadDim returns width/H, or 0 without heads.
func (c *Config) safeHeadDim(width int) int {
	if c.NumAttentionHeads <= 0 {
		return 0
	}
	return width / c.NumAttentionHeads
}

// activations counts the memory of a pass: Forward and Prefill at
// inference, or LossAndGrad when train.
//
// Inference counts, per token, every op output of m.run and the blocks,
// per sequence the retention states a Prefill hands on, and per pair of
// positions one retention call's T*T scores (the kernels' workspace, freed
// before the next call). Training counts the tensors twice (their values,
// kept by the tape, and their gradients), the temporaries of the gradients
// that several ops add into one tensor, the loss's gradient of the logits,
// the scores and their gradient, and the padding row's frozen lookup.
func (c *Config) activations(train bool) api.ActivationBytes {
	const f32 = 4
	V, d, L, H := c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads
	dqk, dv, ffn := c.QueryKeyDim, c.ValueDim, c.FFNDim
	M := c.Dense.M

	// act: floats per token of the tensors that gradients flow through
	// (counted twice in training); tok, seq, pair: other floats per token,
	// per sequence and per pair of positions; fixed: bytes per pass.
	var act, tok, seq, pair, fixed memcount.Count
	act.Add(2, d) // embedding (and its scaling), the final norm
	act.Add(V)    // logits
	links, linked := int64(0), int64(0)
	var layer memcount.Count
	if c.gau() {
		layer.Add(3, d)   // norm, to_out, residual add
		layer.Add(9, dqk) // q, silu, k, silu, scale; the heads of q and k, rotated
		layer.Add(11, dv) // to_hidden, silu, v, g; v's heads, o, its heads back, the group norm; o*g
		links = int64(max(L-1, 0))
		k, v := c.linkConfigs()
		if M > 0 {
			linked = memcount.SumMin(M, L)
			var link memcount.Count
			link.AddN(k.GateActivations(d, dqk), 1)
			link.AddN(v.GateActivations(d, dv), 1)
			// FuseActivations is linear in the number of previous layers.
			k0, k1 := k.FuseActivations(dqk, 0), k.FuseActivations(dqk, 1)
			v0, v1 := v.FuseActivations(dv, 0), v.FuseActivations(dv, 1)
			link.AddN(k0, 1)
			link.AddN(v0, 1)
			act.AddN(memcount.Mul(link.Value(), links))
			act.AddN(memcount.Mul(memcount.Add(max(k1-k0, 0), max(v1-v0, 0)), linked))
		} else if c.Dense.Norm == dense.NormRMS {
			act.AddN(links, dqk+dv) // the norms alone
		}
	} else {
		layer.Add(13, d)  // norms, q, k, its scaling, their heads rotated, out_proj, ffn fc2, residual adds
		layer.Add(8, dv)  // v, g, silu; v's heads, o, its heads back, the group norm; g*o
		layer.Add(4, ffn) // fc1, silu, gate, product
	}
	act.AddN(layer.Value(), L)
	pair.Add(H) // one retention call's scores
	tok.AddN(act.Value(), 1)
	tok.Add(3) // ids: host slices and tensor
	if train {
		tok.AddN(act.Value(), 1) // the gradients
		tok.Add(V)               // the loss's saved gradient of the logits
		tok.Add(4)               // per-row losses; targets: host slices and tensor
		var extra memcount.Count
		if c.gau() {
			extra.Add(d)         // the residual's second contribution
			extra.Add(2, dv)     // the slices' contributions to to_hidden's output
			extra.Add(M, dqk+dv) // gradients added into the linked k and v
		} else {
			extra.Add(2, d) // the residuals' second contributions
		}
		extra.Add(2, dqk+dv) // the views of q, k, v into heads and of o back
		tok.AddN(extra.Value(), L)
		// Gradients of the parameters that are not matrix products'
		// weights go through temporaries when they add to a gradient
		// already there (a tied embedding, or accumulation without
		// ZeroGrad): the embedding and the norms.
		fixed.Add(V, d, f32)
		fixed.Add(L, 2*d+dqk+dv+c.safeHeadDim(dv), f32)
		if c.PadTokenID != nil {
			// The padding row's frozen lookup: masks (host and tensor),
			// the lookup, the two products and their sum, with gradients.
			tok.Add(4)
			tok.Add(2, 4, d)
		}
		pair.Add(H) // the scores' gradient
	} else {
		var st memcount.Count
		st.Add(H, c.safeHeadDim(dqk), c.safeHeadDim(dv))
		seq.AddN(st.Value(), L) // Prefill: the final retention states
	}
	var tensors memcount.Count
	tensors.Add(L, tensorsPerLayer)
	if c.gau() {
		tensors.AddN(links, 2, tensorsPerLink)
		tensors.AddN(linked, 2, tensorsPerLinked)
	}
	tensors.Add(tensorsOutsideLayers)
	if train {
		tensors.AddN(tensors.Value(), 2)
	}
	fixed.AddN(tensors.Value(), memcount.TensorOverhead)
	return api.ActivationBytes{
		Fixed:        fixed.Value(),
		PerSequence:  memcount.Mul(seq.Value(), f32),
		PerToken:     memcount.Mul(tok.Value(), f32),
		PerTokenPair: memcount.Mul(pair.Value(), f32),
	}
}

// stateBytes returns the bytes of one sequence's State: the retention
// state of each layer and the buffers of Step, each with its allocation
// overhead.
func (c *Config) stateBytes() int64 {
	V, d, L, H := c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads
	dqk, dv := c.QueryKeyDim, c.ValueDim
	t := memcount.TensorBytes
	var n memcount.Count
	n.AddN(t(H, c.safeHeadDim(dqk), c.safeHeadDim(dv)), L) // retention states
	n.AddN(t(1), 2)                                        // the step's ids: tensor and host bytes
	n.AddN(t(d), 3)                                        // h, u, y
	n.AddN(t(dqk), 2)                                      // q, k
	n.AddN(t(dv), 4)                                       // v, g, o, on
	n.AddN(t(V), 1)                                        // logits
	n.Add(5, memcount.HeaderBytes)                         // views
	if !c.gau() {
		n.AddN(t(c.FFNDim), 2)
		return n.Value()
	}
	n.AddN(t(2, dv), 1) // hv
	k, v := c.linkConfigs()
	var layer memcount.Count
	layer.AddN(t(dqk), 1) // raw k
	layer.AddN(t(dv), 1)  // raw v
	for _, l := range []struct {
		cfg   dense.Config
		width int
	}{{k, dqk}, {v, dv}} {
		layer.AddN(t(l.width), 2) // sel, acc
		if l.cfg.Gate == dense.GateSiluMLP {
			layer.AddN(t(l.cfg.GateHidden(d)), 1)
		}
		if l.cfg.Gate != dense.GateNone {
			layer.AddN(t(l.width), 1)
		}
		if l.cfg.Fusion == dense.FuseConcat {
			layer.AddN(t(l.cfg.M+1, l.width), 1)
		}
		if l.cfg.Norm == dense.NormRMS {
			layer.AddN(t(l.width), 1)
		}
	}
	n.AddN(layer.Value(), L)
	return n.Value()
}
