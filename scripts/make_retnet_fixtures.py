#!/usr/bin/env python3
"""RetNet and DenseRetNet parity fixtures: torchscale's RetNet and the DenseSSM reference.

Writes architectures/retnet/testdata/ (about 1.1 MB in all), which
architectures/retnet/parity_test.go checks the Go models against:

  retnet-h2/, retnet-h3-odd/   torchscale.architecture.retnet.RetNetDecoder
                               (torchscale 0.3.0: RMSNorm, SwiGLU FFN, untied
                               output_projection) on two tiny configs:
      config.json          every RetNetConfig field (torchscale's names) plus
                           "model_type": "retnet"; activation_fn "swish"
                           (RetNetConfig's default is gelu);
                           no_scale_embedding true in one, false (embeddings
                           times sqrt(d)) in the other
      model.safetensors    RetNetDecoder.state_dict(): no "decoder." prefix,
                           the retnet_rel_pos.angle / .decay buffers included
  denseretnet-m1/, denseretnet-m2/
                               scripts/denseretnet_reference.py (the official
                               DenseSSM model restated without transformers)
                               with dense_block_layers 1 and 2:
      config.json          the official form (model_type "llama",
                           query_key_dim, v_factor, dense_block_layers,
                           intermediate_k_select_scale / _v_select_scale,
                           pad_token_id 0, ...)
      model.safetensors    the state_dict with the official names
                           (model.embed_tokens.weight, model.layers.{i}.
                           self_attn...., lm_head.weight, and the buffers
                           model.retnet_rel_pos.angle / .decay)
  denseretnet-m2-bin/          the same model as denseretnet-m2, as
                               config.json + pytorch_model.bin written by
                               torch.save(model.state_dict()) and nothing
                               else (its reference is denseretnet-m2's)
  evil/                        config.json + a pytorch_model.bin-shaped zip
                               whose data.pkl calls os.system (assembled from
                               pickle opcodes here and never unpickled)

and in each directory but the last two a reference.safetensors:
  ids                  I32 [B,T]    input ids (B = 2, T = 12)
  targets              I32 [B,T]    the next tokens, three of them -100
  logits_parallel      F32 [B,T,V]  parallel form, eval mode
  logits_chunkwise_<n> F32 [B,T,V]  torchscale only: chunkwise form with
                                    recurrent_chunk_size n (3 and 5; torchscale
                                    pads T up to a multiple of n)
  logits_recurrent     F32 [B,T,V]  recurrent form, one token per call from an
                                    empty state
  loss                 F32 [1]      mean cross-entropy of the parallel logits
                                    over the targets that are not -100
  grad.<parameter>     F32          d loss / d parameter, for every parameter
                                    (zeros for parameters the loss does not
                                    reach, such as layer 0's selectors)

Every parameter is drawn afresh from a seeded generator at a realistic scale
(norm weights in [0.6, 1.4], so none sits at 1). The input ids hold id 0
twice: in the DenseRetNet fixtures it is pad_token_id, whose embedding row
gets no gradient (nn.Embedding's padding_idx, as in the official code); in
torchscale's RetNet it is an ordinary token. The script also prints, for each fixture, how far the
forms are from each other in float64 (they agree only up to the group norm's
eps: each form scales retention rows by its own positive factors) and how far
the float32 results are from float64.

Notes on torchscale 0.3.0 (the PyPI release): its parallel form divides each
row of (QK^T * D) by clamp(|sum_m A[n,m]|, min=1) (absolute value of the sum,
no upper clamp), where the DenseSSM code and newer torchscale use
clamp(sum_m |A[n,m]|, 1, 5e4); its chunkwise form scales rows by the
within-chunk sqrt(s_j) and a running max-abs scale. Both only change positive
per-row factors that the group norm removes up to eps; the float64 form
differences printed below bound the effect on these fixtures.

Environment (tested with exactly these versions, CPU only): torch==2.15.0
torchscale==0.3.0 safetensors==0.8.0 numpy==2.4.6, Python 3.11 (torchscale
pulls in fairscale 0.4.0 and timm 0.6.13), as pinned in
scripts/requirements-pyref.txt. Run from the repository root:
  make retnet-fixtures
(which runs `make pyref` first and then this script with
~/.cache/densessm/pyref/bin/python), or from anywhere:
  $PYTHON scripts/make_retnet_fixtures.py
"""

import json
import os
import pickletools
import shutil
import struct
import sys
import zipfile

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torchscale.architecture.config import RetNetConfig
from torchscale.architecture.retnet import RetNetDecoder

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from denseretnet_reference import DenseRetNetConfig, DenseRetNetForCausalLM  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TESTDATA = os.path.join(REPO, "architectures", "retnet", "testdata")

# Batch and sequence length of every fixture, and torchscale's chunk sizes
# (5 does not divide SEQ, so torchscale's padding path is exercised).
BATCH, SEQ = 2, 12
CHUNKS = (3, 5)

# Larger q and v projections in torchscale's RetNet: the retention output
# before the group norm grows with them, so the group norm's eps, the only
# place where the three forms' different per-row scalings show, matters less
# (the float64 chunkwise-vs-parallel gap printed below is what remains).
RETENTION_GAINS = {"retention.q_proj.weight": 3.0, "retention.v_proj.weight": 3.0}

RETNET_CONFIGS = {
    "retnet-h2": dict(
        seed=5101,
        embed_std=0.5,
        config=dict(
            decoder_embed_dim=24, decoder_value_embed_dim=36, decoder_retention_heads=2,
            decoder_ffn_embed_dim=40, decoder_layers=2, vocab_size=50, activation_fn="swish",
            no_scale_embedding=True, layernorm_eps=1e-6,
        ),
    ),
    "retnet-h3-odd": dict(
        seed=5202,
        embed_std=0.15,  # times sqrt(30) from the embedding scale
        config=dict(
            decoder_embed_dim=30, decoder_value_embed_dim=45, decoder_retention_heads=3,
            decoder_ffn_embed_dim=37, decoder_layers=3, vocab_size=53, activation_fn="swish",
            no_scale_embedding=False, layernorm_eps=1e-6,
        ),
    ),
}

DENSE_CONFIGS = {
    "denseretnet-m1": dict(
        seed=5303,
        config=DenseRetNetConfig(
            vocab_size=40, hidden_size=32, query_key_dim=16, num_attention_heads=2, num_hidden_layers=3,
            v_factor=2, dense_block_layers=1, intermediate_k_select_scale=8, intermediate_v_select_scale=16,
            pad_token_id=0,
        ),
    ),
    "denseretnet-m2": dict(
        seed=5404,
        bin_copy="denseretnet-m2-bin",
        config=DenseRetNetConfig(
            vocab_size=44, hidden_size=32, query_key_dim=16, num_attention_heads=4, num_hidden_layers=4,
            v_factor=2, dense_block_layers=2, intermediate_k_select_scale=16, intermediate_v_select_scale=8,
            pad_token_id=0,
        ),
    ),
}


def uniform(gen, shape, lo, hi):
    """Uniform float64 samples in [lo, hi) from gen."""
    return torch.rand(shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo


def perturb(model, gen, embed_std, gains=None):
    """Overwrite every parameter with seeded values: embeddings N(0, embed_std), norm
    weights U[0.6, 1.4], linear weights U(+-g/sqrt(fan_in)) where g is gains[suffix]
    for a name ending in that suffix, else 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            if p.dim() == 1:
                v = uniform(gen, shape, 0.6, 1.4)
            elif name.endswith("embed_tokens.weight"):
                v = torch.randn(shape, generator=gen, dtype=torch.float64) * embed_std
            else:
                bound = shape[1] ** -0.5
                for suffix, g in (gains or {}).items():
                    if name.endswith(suffix):
                        bound *= g
                v = uniform(gen, shape, -bound, bound)
            p.copy_(v.to(p.dtype))


def make_batch(gen, vocab):
    """ids [B,T] in [0, vocab), id 0 at two places, and their next-token targets with three -100s."""
    seq = torch.randint(0, vocab, (BATCH, SEQ + 1), generator=gen)
    seq[0, 2] = 0
    seq[1, 7] = 0
    targets = seq[:, 1:].clone()
    targets[0, 4] = -100
    targets[1, 0] = -100
    targets[1, SEQ - 1] = -100
    return seq[:, :SEQ].contiguous(), targets


def rel(a, b):
    """Max abs difference over max abs value of b."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def loss_and_grads(model, forward, ids, targets, vocab):
    """Mean cross-entropy of forward(ids) and d loss / d parameter for every parameter."""
    model.train()
    model.zero_grad(set_to_none=True)
    logits = forward(ids)
    loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        g = torch.zeros_like(p) if p.grad is None else p.grad
        grads["grad." + name] = g.detach().float().contiguous()
    model.eval()
    return loss.detach().reshape(1).float(), grads


def fresh_dir(name):
    """Create an empty fixture directory and return its path."""
    d = os.path.join(TESTDATA, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def write_json(path, obj):
    """Write obj as indented JSON with a final newline."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def state_dict_f32(model):
    """The state_dict (parameters and buffers) as contiguous float32 tensors."""
    return {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}


def report(name, d, forms32, forms64, loss):
    """Print the fixture's size and the form-to-form and float32-to-float64 differences."""
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    base = forms64["parallel"]
    cross = ", ".join(f"{k} {rel(v, base):.1e}" for k, v in forms64.items() if k != "parallel")
    prec = ", ".join(f"{k} {rel(forms32[k], forms64[k]):.1e}" for k in forms32)
    print(f"{name}: loss {loss.item():.6f}, logits max |.| {base.abs().max().item():.3f}, {size} bytes")
    print(f"  float64 forms vs parallel: {cross}")
    print(f"  float32 vs float64 per form: {prec}")


# --- torchscale RetNet ---------------------------------------------------------------------------

def retnet_forms(state, cfg_kwargs, ids, dtype):
    """Logits of every form of torchscale's RetNetDecoder with weights state, in dtype."""
    def build(**extra):
        m = RetNetDecoder(RetNetConfig(**cfg_kwargs, **extra),
                          embed_tokens=torch.nn.Embedding(cfg_kwargs["vocab_size"], cfg_kwargs["decoder_embed_dim"]))
        m.load_state_dict(state)
        return m.to(dtype).eval()

    out = {}
    with torch.no_grad():
        out["parallel"] = build()(ids)[0]
        for n in CHUNKS:
            out[f"chunkwise_{n}"] = build(chunkwise_recurrent=True, recurrent_chunk_size=n)(ids)[0]
        rec, inc = build(), {}
        steps = [rec(ids[:, :t + 1], incremental_state=inc)[0][:, -1] for t in range(ids.shape[1])]
        out["recurrent"] = torch.stack(steps, dim=1)
    return out


def make_retnet(name, spec):
    gen = torch.Generator().manual_seed(spec["seed"])
    kw = spec["config"]
    cfg = RetNetConfig(**kw)
    model = RetNetDecoder(cfg, embed_tokens=torch.nn.Embedding(kw["vocab_size"], kw["decoder_embed_dim"]))
    perturb(model, gen, spec["embed_std"], RETENTION_GAINS)
    state = state_dict_f32(model)
    ids, targets = make_batch(gen, kw["vocab_size"])

    forms32 = retnet_forms(state, kw, ids, torch.float32)
    forms64 = retnet_forms(state, kw, ids, torch.float64)
    loss, grads = loss_and_grads(model, lambda x: model(x)[0], ids, targets, kw["vocab_size"])

    d = fresh_dir(name)
    write_json(os.path.join(d, "config.json"), {"model_type": "retnet", **vars(cfg)})
    save_file(state, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    ref = {"ids": ids.to(torch.int32), "targets": targets.to(torch.int32), "loss": loss, **grads}
    ref.update({"logits_" + k: v.float().contiguous() for k, v in forms32.items()})
    save_file(ref, os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})
    report(name, d, forms32, forms64, loss)


# --- DenseRetNet reference -----------------------------------------------------------------------

def dense_forms(model, ids, dtype):
    """Parallel and recurrent logits of the reference model in dtype (the model is left in float32)."""
    m = model.to(dtype)
    with torch.no_grad():
        out = {"parallel": m(ids), "recurrent": m.forward_recurrent(ids)}
    model.to(torch.float32)
    return out


def make_dense(name, spec):
    gen = torch.Generator().manual_seed(spec["seed"])
    cfg = spec["config"]
    model = DenseRetNetForCausalLM(cfg).eval()
    perturb(model, gen, 0.5)
    ids, targets = make_batch(gen, cfg.vocab_size)

    forms32 = dense_forms(model, ids, torch.float32)
    forms64 = dense_forms(model, ids, torch.float64)
    loss, grads = loss_and_grads(model, model, ids, targets, cfg.vocab_size)

    d = fresh_dir(name)
    write_json(os.path.join(d, "config.json"), cfg.to_official_json())
    save_file(state_dict_f32(model), os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    ref = {"ids": ids.to(torch.int32), "targets": targets.to(torch.int32), "loss": loss, **grads}
    ref.update({"logits_" + k: v.float().contiguous() for k, v in forms32.items()})
    save_file(ref, os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})
    report(name, d, forms32, forms64, loss)

    if "bin_copy" in spec:
        b = fresh_dir(spec["bin_copy"])
        write_json(os.path.join(b, "config.json"), cfg.to_official_json())
        torch.save(model.state_dict(), os.path.join(b, "pytorch_model.bin"))
        print(f"{spec['bin_copy']}: torch.save(state_dict) of {name}, "
              f"{os.path.getsize(os.path.join(b, 'pytorch_model.bin'))} bytes")


# --- the malicious pickle ------------------------------------------------------------------------

def pickle_str(s):
    """BINUNICODE opcode for s."""
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def evil_pickle():
    """Pickle opcodes of an OrderedDict whose one entry is os.system("echo ...") (protocol 2)."""
    return b"".join([
        b"\x80\x02",                      # PROTO 2
        b"ccollections\nOrderedDict\n",   # GLOBAL collections.OrderedDict
        b")R",                            # EMPTY_TUPLE, REDUCE: OrderedDict()
        b"(",                             # MARK
        pickle_str("model.embed_tokens.weight"),
        b"cos\nsystem\n",                 # GLOBAL os.system
        pickle_str("echo densessm must never run this"),
        b"\x85R",                         # TUPLE1, REDUCE: os.system(...)
        b"u",                             # SETITEMS
        b".",                             # STOP
    ])


def make_evil():
    data = evil_pickle()
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]  # parses, never executes
    if ("GLOBAL", "os system") not in ops or ops[-1][0] != "STOP":
        raise AssertionError(f"evil pickle does not parse as intended: {ops}")
    d = fresh_dir("evil")
    write_json(os.path.join(d, "config.json"), DENSE_CONFIGS["denseretnet-m1"]["config"].to_official_json())
    with zipfile.ZipFile(os.path.join(d, "pytorch_model.bin"), "w", zipfile.ZIP_STORED) as z:
        for member, content in (("data.pkl", data), ("byteorder", b"little"), ("version", b"3\n")):
            # A fixed timestamp keeps the file byte-identical across runs.
            z.writestr(zipfile.ZipInfo("pytorch_model/" + member, date_time=(2024, 1, 1, 0, 0, 0)), content)
    print(f"evil: pytorch_model.bin with {len(data)}-byte data.pkl calling os.system")


def main():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(TESTDATA, exist_ok=True)
    for name, spec in RETNET_CONFIGS.items():
        make_retnet(name, spec)
    for name, spec in DENSE_CONFIGS.items():
        make_dense(name, spec)
    make_evil()
    for root, _, files in os.walk(TESTDATA):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(TESTDATA) for f in fs)
    print(f"ok: {total} bytes under {os.path.relpath(TESTDATA, REPO)}")


if __name__ == "__main__":
    main()
