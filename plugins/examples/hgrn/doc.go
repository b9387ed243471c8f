// Package hgrn is an HGRN-style gated linear recurrent language model (Qin
// et al. 2023, "Hierarchically Gated Recurrent Neural Network for Sequence
// Modeling", the element-wise real-valued HGRN1 recurrence) with an
// optional DenseSSM-style dense hidden link, built out of the densessm tree
// on its public packages only. Importing the package registers the
// architecture "hgrn"; cmd/densessm-plugin-hgrn serves it as a plugin.
//
// # The model
//
// Vectors are rows; for a weight W [out, in], x W^T maps a row of width in
// to one of width out. σ is the logistic sigmoid, silu(x) = x σ(x), ⊙ the
// element-wise product, and
//
//	RMSNorm_w(x) = x / sqrt(mean(x²) + ε) ⊙ w        (ε = rms_norm_eps)
//
// over the last axis. D = hidden_size, I = intermediate_size, L =
// num_hidden_layers, V = vocab_size, m = dense_m. For a token x_t at
// position t of a sequence:
//
//	h⁰_t = E[x_t]                                     E [V, D]
//
// and for each layer l = 0 .. L-1, with the fixed forget-gate lower bound
//
//	λ_l = (l / L) · lower_bound_max
//
// (0 for the first layer, rising towards lower_bound_max for the last, the
// "hierarchical" part of HGRN: deeper layers remember longer):
//
//	u        = RMSNorm_{w^l_attn}(h^l_t)
//	f^l_t    = λ_l + (1 - λ_l) σ(u W_f^T)             forget gate, in [λ_l, 1]
//	i^l_t    = silu(u W_i^T)                          input
//	g^l_t    = u W_g^T                                output gate
//	s^l_t    = f^l_t ⊙ s^l_{t-1} + (1 - f^l_t) ⊙ i^l_t      s^l_{-1} = 0
//	ŝ^l_t    = s^l_t + Σ_{j=1}^{min(l, m)} σ(s^{l-j}_t (W^{l,j}_sel)^T) ⊙ s^{l-j}_t
//	o^l_t    = RMSNorm_{w^l_g}(ŝ^l_t) ⊙ silu(g^l_t)
//	r^l_t    = h^l_t + o^l_t W_o^T
//	x        = RMSNorm_{w^l_mlp}(r^l_t)
//	h^{l+1}_t = r^l_t + (silu(x W_gate^T) ⊙ (x W_up^T)) W_down^T
//
// and the logits are
//
//	logits_t = RMSNorm_{w_norm}(h^L_t) H^T            H = lm_head, or E when tied
//
// with W_f, W_i, W_g, W_o, W^{l,j}_sel [D, D], W_gate, W_up [I, D] and W_down
// [D, I]. All projections are bias-free. 1 - f^l_t is computed as
// (1 - λ_l)(1 - σ(u W_f^T)).
//
// # The dense hidden link
//
// With dense_m = m > 0, layer l reads the states of the min(l, m) layers
// below it at the same token, each through its own selection gate
// σ(s^{l-j}_t (W^{l,j}_sel)^T), and adds them to its own state before the
// output norm (ŝ above). The link is read-only: the recurrence carries the
// layer's own state s^l (not ŝ^l), and it is s^l that the layers above read.
// So the recurrent state of a layer is s^l alone, whatever m is, and the
// link costs nothing to carry. With m = 0, ŝ = s and there are no W_sel.
//
// # Forms
//
// Forward in the parallel form (and LossAndGrad, which differentiates it)
// computes the recurrence for all tokens at once with a Hillis–Steele
// doubling scan of the pairs (f_t, a_t), a_t = (1 - f_t) ⊙ i_t, under the
// associative composition (f, a) then (f', a') = (f f', f' a + a'):
// ceil(log2 T) levels of whole-sequence element-wise products, each exact
// (no logarithms or exponentials), giving
//
//	F_t = Π_{k≤t} f_k,   A_t = Σ_{k≤t} (Π_{k<r≤t} f_r) a_k,   s_t = A_t + F_t ⊙ s_{-1}.
//
// The chunkwise form runs the parallel form on blocks of Form.Chunk tokens,
// carrying s^l from block to block; Step is the recurrence one token at a
// time on the backend's kernels. All three agree up to float32 rounding.
//
// # Parameters
//
//	model.embed_tokens.weight                     E [V, D]
//	model.layers.<l>.attn_norm.weight             w^l_attn [D]
//	model.layers.<l>.attn.f_proj.weight           W_f [D, D]
//	model.layers.<l>.attn.i_proj.weight           W_i [D, D]
//	model.layers.<l>.attn.g_proj.weight           W_g [D, D]
//	model.layers.<l>.attn.dense_sel.<j>.weight    W^{l,j}_sel [D, D], j = 1 .. min(l, m)
//	model.layers.<l>.attn.g_norm.weight           w^l_g [D]
//	model.layers.<l>.attn.o_proj.weight           W_o [D, D]
//	model.layers.<l>.mlp_norm.weight              w^l_mlp [D]
//	model.layers.<l>.mlp.gate_proj.weight         W_gate [I, D]
//	model.layers.<l>.mlp.up_proj.weight           W_up [I, D]
//	model.layers.<l>.mlp.down_proj.weight         W_down [D, I]
//	model.norm.weight                             w_norm [D]
//	lm_head.weight                                H [V, D] (absent when tied)
//
// Initialisation: E and H from N(0, 0.02²); the projections from PyTorch's
// Linear default U(±1/sqrt(fan_in)), W_o and W_down scaled by 1/sqrt(L); the
// norm weights ones.
package hgrn
