"""A self-contained PyTorch reference of DenseRetNet as the official DenseSSM code computes it.

The official model (github.com/WailordHe/DenseSSM, modeling/dense_gau_retnet_350m/
modeling_dense_gau_retnet.py, class LlamaForCausalLM around DenseGAURetNetModel)
imports transformers APIs that transformers 5 no longer has (LlamaConfig as its
config class, top_k_top_p_filtering), so this module re-states the same model
without transformers: the same parameter and buffer names (so that its
state_dict is the official checkpoint layout), the same arithmetic in the same
float32 order where it matters, and the same two forward forms.

Model (specs/models.md section 3), with u = RMSNorm(x) per layer l:
  q = silu(u Wq);  k = silu(u Wk) * dk^-0.5;  [v | g] = silu(u Wh)
  layers l >= 1 (the official code's "dense" flag; it is set even when
  dense_block_layers is 0, in which case no tensor is added but k_norm and
  v_norm still apply):
    k = k_norm(k + sum_p silu(k_select(u)) * k_p)
    v = v_norm(v + sum_p silu(v_select(u)) * v_p)
  where p runs over the raw (pre-fusion, pre-rotation, already scaled) k and v
  of the previous min(dense_block_layers, l) layers, and
  k_select(u) = fc2(silu(fc1 u)) (HiddenProjection: d -> d // r -> d // 2 for
  k, d -> d // r -> int(d // 0.5) for v; r = intermediate_k_select_scale and
  intermediate_v_select_scale, which the official code fixes at 32);
  rotation of q and k by position; retention (parallel or recurrent);
  group norm (RMSNorm over each head's dv with one weight shared by the
  heads); times g; to_out; x <- x + that.
Logits: lm_head(RMSNorm(x)).

Forms:
  forward(ids)               parallel form over whole sequences (the
                             official forward_impl='parallel')
  forward_recurrent(ids)     one token at a time through the per-layer
                             retention state (the official
                             forward_impl='recurrent'), token t rotated by
                             position t. The official generate() passes
                             sequence_offset=t for prompt token t and its
                             rel-pos module rotates by sequence_offset - 1,
                             so it rotates every prompt token one position
                             early; rotation only enters through q.k of pairs
                             rotated alike, so that shift changes no result
                             beyond rounding, and here positions are exact.
The embedding has padding_idx = pad_token_id like the official nn.Embedding
(its row gets no gradient).

Requirements: torch (tested with 2.15.0). No transformers.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class DenseRetNetConfig:
    """The fields of the official config.json that the model reads."""

    vocab_size: int
    hidden_size: int
    query_key_dim: int
    num_attention_heads: int
    num_hidden_layers: int
    v_factor: int = 2
    dense_block_layers: int = 1
    rms_norm_eps: float = 1e-6
    intermediate_k_select_scale: int = 32
    intermediate_v_select_scale: int = 32
    pad_token_id: int | None = None

    @property
    def expansion_dim(self):
        """Width e of v and of the gate: hidden_size * v_factor."""
        return int(self.hidden_size * self.v_factor)

    def check(self):
        """Raise ValueError when the official code could not build or run this configuration."""
        d, h = self.hidden_size, self.num_attention_heads
        if self.query_key_dim % h or (self.query_key_dim // h) % 2:
            raise ValueError("query_key_dim must split into heads of even width (rotation pairs)")
        if self.expansion_dim % h:
            raise ValueError("hidden_size * v_factor must split into heads")
        # The selectors' output widths are fixed by the official code's ratios
        # 2 and 0.5; fusion adds them to k and v, so they must match.
        if d // 2 != self.query_key_dim or int(d // 0.5) != self.expansion_dim:
            raise ValueError("the official selectors need query_key_dim = hidden_size/2 and v_factor = 2")
        for r in (self.intermediate_k_select_scale, self.intermediate_v_select_scale):
            if d // r < 1:
                raise ValueError("a selector bottleneck hidden_size // ratio must be at least 1")

    def to_official_json(self):
        """The config.json dict in the published checkpoints' form (model_type "llama")."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": self.pad_token_id,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "query_key_dim": self.query_key_dim,
            "initializer_range": 0.02,
            "max_position_embeddings": 2048,
            "model_type": "llama",
            "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_hidden_layers,
            "rms_norm_eps": self.rms_norm_eps,
            "layernorm_eps": 1e-5,
            "retnorm": False,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
            "use_cache": False,
            "vocab_size": self.vocab_size,
            "v_factor": self.v_factor,
            "dense_block_layers": self.dense_block_layers,
            "intermediate_k_select_scale": self.intermediate_k_select_scale,
            "intermediate_v_select_scale": self.intermediate_v_select_scale,
            "dropout": 0.0,
            "deepnorm": False,
        }


class RMSNorm(nn.Module):
    """LLaMA RMSNorm: w * x * rsqrt(mean(x^2) + eps) over the last axis."""

    def __init__(self, width, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        ms = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(ms + self.eps))


class HiddenProjection(nn.Module):
    """The selection gate's MLP before its silu: fc2(silu(fc1 x)), no biases."""

    def __init__(self, width, mid_ratio, out_ratio):
        super().__init__()
        self.fc1 = nn.Linear(width, width // mid_ratio, bias=False)
        self.fc2 = nn.Linear(width // mid_ratio, int(width // out_ratio), bias=False)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


def rotate(x, sin, cos):
    """Rotate interleaved pairs (2i, 2i+1) of the last axis: (a, b) -> (a cos - b sin, b cos + a sin)."""
    a, b = x[..., 0::2], x[..., 1::2]
    swapped = torch.stack((-b, a), dim=-1).flatten(-2)
    return x * cos + swapped * sin


class RelPos(nn.Module):
    """Rotation angles and per-head log decays, kept as the official buffers angle and decay."""

    def __init__(self, cfg):
        super().__init__()
        dk = cfg.query_key_dim // cfg.num_attention_heads
        angle = 1.0 / (10000 ** torch.linspace(0, 1, dk // 2))
        self.register_buffer("angle", angle.repeat_interleave(2))
        heads = torch.arange(cfg.num_attention_heads, dtype=torch.float)
        self.register_buffer("decay", torch.log(1 - 2 ** (-5 - heads)))

    def parallel(self, T):
        """sin, cos [T, dk] and the decay mask [H, T, T]: gamma^(n-m) / sqrt(s_n) for m <= n, else 0."""
        pos = torch.arange(T).to(self.decay)
        sin, cos = torch.sin(pos[:, None] * self.angle), torch.cos(pos[:, None] * self.angle)
        diff = pos[:, None] - pos[None, :]
        causal = diff >= 0
        mask = torch.exp(torch.where(causal, diff, torch.zeros_like(diff)) * self.decay[:, None, None])
        mask = mask * causal
        mask = mask / mask.sum(-1, keepdim=True).sqrt()
        return sin, cos, mask

    def recurrent(self, position):
        """sin, cos [dk] at one position and the decays gamma [H]."""
        return torch.sin(self.angle * position), torch.cos(self.angle * position), self.decay.exp()


class GauRetention(nn.Module):
    """The gated retention unit with dense fusion (official MultiScaleGauRetention)."""

    def __init__(self, cfg):
        super().__init__()
        d, e, H = cfg.hidden_size, cfg.expansion_dim, cfg.num_attention_heads
        self.heads, self.dk, self.dv, self.e = H, cfg.query_key_dim // H, e // H, e
        self.q_proj = nn.Linear(d, cfg.query_key_dim, bias=False)
        self.k_proj = nn.Linear(d, cfg.query_key_dim, bias=False)
        self.group_norm = RMSNorm(self.dv, cfg.rms_norm_eps)
        self.to_hidden = nn.Sequential(nn.Linear(d, 2 * e, bias=False), nn.SiLU())
        self.to_out = nn.Sequential(nn.Linear(e, d, bias=False), nn.Dropout(0.0))
        self.k_select = HiddenProjection(d, cfg.intermediate_k_select_scale, 2)
        self.v_select = HiddenProjection(d, cfg.intermediate_v_select_scale, 0.5)
        self.k_norm = RMSNorm(cfg.query_key_dim, cfg.rms_norm_eps)
        self.v_norm = RMSNorm(e, cfg.rms_norm_eps)

    def project(self, u, dense, k_prev, v_prev):
        """q, fused k and v, gate, and the raw k and v this layer hands on; u [..., d]."""
        q = F.silu(self.q_proj(u))
        k_raw = F.silu(self.k_proj(u)) * self.dk ** -0.5
        v_raw, gate = self.to_hidden(u).chunk(2, dim=-1)
        k, v = k_raw, v_raw
        if dense:
            a_k = F.silu(self.k_select(u))
            for kp in k_prev:
                k = k + a_k * kp
            k = self.k_norm(k)
            a_v = F.silu(self.v_select(u))
            for vp in v_prev:
                v = v + a_v * vp
            v = self.v_norm(v)
        return q, k, v, gate, k_raw, v_raw

    def finish(self, o, gate):
        """Group norm of o [..., H, dv], times the gate, through to_out."""
        o = self.group_norm(o).reshape(*o.shape[:-2], self.e) * gate
        return self.to_out(o)

    def forward_parallel(self, u, rel, dense, k_prev, v_prev):
        """u [B,T,d] -> ([B,T,d], raw k, raw v)."""
        B, T, _ = u.shape
        sin, cos, mask = rel
        q, k, v, gate, k_raw, v_raw = self.project(u, dense, k_prev, v_prev)
        q = rotate(q.view(B, T, self.heads, self.dk).transpose(1, 2), sin, cos)
        k = rotate(k.view(B, T, self.heads, self.dk).transpose(1, 2), sin, cos)
        v = v.view(B, T, self.heads, self.dv).transpose(1, 2)
        a = (q @ k.transpose(-1, -2)) * mask
        a = a / a.detach().abs().sum(-1, keepdim=True).clamp(min=1, max=5e4)
        o = (a @ v).transpose(1, 2)  # [B,T,H,dv]
        return self.finish(o, gate), k_raw, v_raw

    def forward_step(self, u, rel, dense, k_prev, v_prev, cache):
        """One token u [B,d]; cache holds the state S [B,H,dk,dv] and the scale s [H] between calls."""
        B = u.shape[0]
        sin, cos, gamma = rel
        q, k, v, gate, k_raw, v_raw = self.project(u, dense, k_prev, v_prev)
        q = rotate(q.view(B, self.heads, self.dk), sin, cos)
        k = rotate(k.view(B, self.heads, self.dk), sin, cos)
        kv = k[..., :, None] * v.view(B, self.heads, 1, self.dv)
        if "state" in cache:
            prev = cache["scale"]
            scale = prev * gamma + 1
            decay = (prev.sqrt() * gamma / scale.sqrt()).view(self.heads, 1, 1)
            kv = cache["state"] * decay + kv / scale.sqrt().view(self.heads, 1, 1)
        else:
            scale = torch.ones_like(gamma)
        cache["state"], cache["scale"] = kv, scale
        o = (q[..., :, None] * kv).sum(-2)  # [B,H,dv]
        return self.finish(o, gate), k_raw, v_raw


class DecoderLayer(nn.Module):
    """Pre-norm residual block around the GAU (no FFN)."""

    def __init__(self, cfg):
        super().__init__()
        self.self_attn = GauRetention(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DenseGauRetNetModel(nn.Module):
    """Embedding, layers, final norm and the rel-pos buffers (official names under "model.")."""

    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, cfg.pad_token_id)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.retnet_rel_pos = RelPos(cfg)


class DenseRetNetForCausalLM(nn.Module):
    """The official LlamaForCausalLM of DenseSSM: model.* plus an untied lm_head."""

    def __init__(self, cfg):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.model = DenseGauRetNetModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def _run_layers(self, x, layer_fn):
        """Run x through the layers with the dense bus of raw k and v; layer_fn(attn, u, dense, ks, vs, i)."""
        ks, vs = [], []
        m = self.cfg.dense_block_layers
        for i, layer in enumerate(self.model.layers):
            u = layer.input_layernorm(x)
            out, k_raw, v_raw = layer_fn(layer.self_attn, u, i >= 1, ks, vs, i)
            x = x + out
            ks.append(k_raw)
            vs.append(v_raw)
            if len(ks) > m:
                ks.pop(0)
                vs.pop(0)
        return self.lm_head(self.model.norm(x))

    def forward(self, ids):
        """Parallel form: ids [B,T] -> logits [B,T,V]."""
        rel = self.model.retnet_rel_pos.parallel(ids.shape[1])
        x = self.model.embed_tokens(ids)
        return self._run_layers(x, lambda attn, u, dense, ks, vs, i: attn.forward_parallel(u, rel, dense, ks, vs))

    def forward_recurrent(self, ids):
        """Recurrent form, token by token from an empty state: ids [B,T] -> logits [B,T,V]."""
        caches = [{} for _ in self.model.layers]
        out = []
        for t in range(ids.shape[1]):
            rel = self.model.retnet_rel_pos.recurrent(t)
            x = self.model.embed_tokens(ids[:, t])
            out.append(self._run_layers(
                x, lambda attn, u, dense, ks, vs, i: attn.forward_step(u, rel, dense, ks, vs, caches[i])))
        return torch.stack(out, dim=1)


if __name__ == "__main__":
    demo = DenseRetNetConfig(vocab_size=40, hidden_size=32, query_key_dim=16, num_attention_heads=2,
                             num_hidden_layers=3, dense_block_layers=2, intermediate_k_select_scale=8,
                             intermediate_v_select_scale=16)
    net = DenseRetNetForCausalLM(demo).double()
    n = sum(p.numel() for p in net.parameters())
    seq = torch.randint(0, demo.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        par, rec = net(seq), net.forward_recurrent(seq)
    print(f"{n} parameters; float64 parallel vs recurrent: max rel diff "
          f"{float((par - rec).abs().max() / par.abs().max()):.2e}")
