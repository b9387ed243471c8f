#!/usr/bin/env python3
"""Mamba parity fixtures against Hugging Face transformers, and the reverse check.

Purpose
  1. Forward direction (the committed fixtures). For each tiny configuration
     in CONFIGS, build a MambaForCausalLM in float32 with every parameter drawn
     afresh from a seeded generator (a perturbed version of the reference
     initialisation, so that no parameter sits at a degenerate value such as
     D = 1 or norm weight = 1), and write into
     architectures/mamba/testdata/<name>/:
       config.json, model.safetensors   save_pretrained(safe_serialization=True)
       reference.safetensors            float32 results of transformers' pure
                                        PyTorch path, all from the same weights:
         ids      I32 [B,T]    input token ids
         targets  I32 [B,T]    the next tokens, a few set to -100 (ignored)
         logits   F32 [B,T,V]  model(ids) in eval mode, no cache
         loss     F32 [1]      F.cross_entropy(logits.view(-1,V),
                               targets.view(-1), ignore_index=-100), mean,
                               from a train-mode forward
         grad.<parameter name> F32  d loss / d parameter, for every
                               parameter (a tied lm_head is the embedding and
                               appears once, as backbone.embeddings.weight)
     architectures/mamba/parity_test.go checks the Go model against these.
  2. Reverse direction (checked here, not in `make test`). Build the Go CLI,
     `densessm init --arch mamba --config <fixture config.json> --seed 3`,
     run `densessm logits` in both modes, load the Go-written directory with
     MambaForCausalLM.from_pretrained and assert that transformers' logits
     equal ours to 1e-4 relative (max abs difference over max abs value).

The reference path is transformers' torch-only code (no mamba_ssm,
causal_conv1d or hub kernels may be importable: the script refuses to run if
they are, since they would replace the slow path being checked).

Environment (tested with exactly these versions; everything runs on the CPU,
so PyTorch's CPU-only wheel from https://download.pytorch.org/whl/cpu serves
as well as the default CUDA one): torch==2.15.0 transformers==5.24.0
safetensors==0.8.0 numpy==2.4.6, Python 3.11, as pinned in
scripts/requirements-pyref.txt; `make pyref` builds that environment in
~/.cache/densessm/pyref. Run from the repository root (Go on PATH):
  make mamba-fixtures
which builds the environment if needed and runs
  ~/.cache/densessm/pyref/bin/python scripts/make_mamba_fixtures.py
(make mamba-fixtures PYTHON=... runs another interpreter with the same packages).
"""

import importlib.util
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import MambaConfig, MambaForCausalLM

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TESTDATA = os.path.join(REPO, "architectures", "mamba", "testdata")

# Batch and sequence length of the fixtures.
BATCH, SEQ = 2, 12

# The tiny configurations, by fixture directory name. "ids_below" bounds the
# input ids (the vocabulary rows above it are padding, as in the released
# models whose 50277 tokens are padded to 50280); "seed" makes each fixture
# reproducible on its own.
CONFIGS = {
    "tied": dict(
        seed=1001,
        ids_below=100,
        config=dict(
            vocab_size=104, hidden_size=40, num_hidden_layers=3, state_size=6, conv_kernel=4,
            expand=2, time_step_rank=5, use_bias=False, use_conv_bias=True, tie_word_embeddings=True,
        ),
    ),
    "untied-bias": dict(
        seed=2002,
        ids_below=64,
        config=dict(
            vocab_size=64, hidden_size=24, num_hidden_layers=2, state_size=16, conv_kernel=3,
            expand=2, time_step_rank="auto", use_bias=True, use_conv_bias=False, tie_word_embeddings=False,
        ),
    ),
}

# Tolerance of the reverse check (max abs difference / max abs value).
REVERSE_TOL = 1e-4


def require_torch_path():
    """Refuse to run when an optimised Mamba kernel package could replace the torch path."""
    for pkg in ("mamba_ssm", "causal_conv1d", "kernels"):
        if importlib.util.find_spec(pkg) is not None:
            sys.exit(f"{pkg} is importable: it would replace transformers' torch-only Mamba path; "
                     "use a venv without it")


def uniform(gen, shape, lo, hi):
    """Uniform samples in [lo, hi) from gen."""
    return torch.rand(shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo


def perturbed_parameters(model, cfg, gen):
    """Overwrite every parameter of model with seeded values at a realistic scale.

    Linear and conv weights follow PyTorch's fan-in uniform bound; the SSM
    parameters follow the reference initialisation with noise added, so that
    A_log, D, the norm weights, dt bias and the biases all differ per channel.
    """
    E, N, R = cfg.intermediate_size, cfg.state_size, cfg.time_step_rank
    values = {}
    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        leaf = name.split(".")[-2:]
        if name == "backbone.embeddings.weight" or name == "lm_head.weight":
            v = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.3
        elif leaf[-1] == "weight" and leaf[0] in ("norm", "norm_f"):
            v = uniform(gen, shape, 0.6, 1.4)
        elif leaf[-1] == "A_log":
            v = torch.log(torch.arange(1, N + 1, dtype=torch.float64)).expand(E, N) + uniform(gen, shape, -0.5, 0.5)
        elif leaf[-1] == "D":
            v = uniform(gen, shape, 0.3, 1.7)
        elif leaf == ["dt_proj", "bias"]:
            # dt log-uniform in [1e-2, 0.3] (larger than the usual [1e-3, 0.1]
            # so that the state decays visibly over a dozen tokens), stored as
            # softplus^-1(dt).
            dt = torch.exp(uniform(gen, shape, math.log(1e-2), math.log(0.3)))
            v = dt + torch.log(-torch.expm1(-dt))
        elif leaf == ["dt_proj", "weight"]:
            v = uniform(gen, shape, -(R ** -0.5), R ** -0.5)
        elif leaf == ["conv1d", "weight"]:
            bound = 1 / math.sqrt(cfg.conv_kernel)
            v = uniform(gen, shape, -bound, bound)
        elif leaf[-1] == "weight":  # in_proj, x_proj, out_proj
            bound = 1 / math.sqrt(shape[1])
            v = uniform(gen, shape, -bound, bound)
        elif leaf[-1] == "bias":  # conv1d, in_proj, out_proj biases
            v = uniform(gen, shape, -0.2, 0.2)
        else:
            raise ValueError(f"no initialisation rule for parameter {name} {shape}")
        values[name] = v
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(values[name].to(torch.float32))


def make_fixture(name, spec):
    """Build, save and run one fixture model; return its output directory."""
    gen = torch.Generator().manual_seed(spec["seed"])
    cfg = MambaConfig(**spec["config"])
    model = MambaForCausalLM(cfg).to(torch.float32)
    tied = cfg.tie_word_embeddings
    if tied != (model.lm_head.weight is model.backbone.embeddings.weight):
        raise AssertionError(f"{name}: lm_head tying is not as configured (tie_word_embeddings={tied})")
    perturbed_parameters(model, cfg, gen)

    V = cfg.vocab_size
    seq = torch.randint(0, spec["ids_below"], (BATCH, SEQ + 1), generator=gen)
    ids = seq[:, :SEQ].contiguous()
    targets = seq[:, 1:].clone()
    targets[0, 3] = -100
    targets[1, SEQ - 1] = -100
    targets[1, 7] = -100

    model.eval()
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits.float()

    model.train()
    model.zero_grad(set_to_none=True)
    train_logits = model(ids, use_cache=False).logits.float()
    loss = F.cross_entropy(train_logits.view(-1, V), targets.view(-1), ignore_index=-100)
    loss.backward()
    if not torch.equal(train_logits.detach(), logits):
        raise AssertionError(f"{name}: train-mode logits differ from eval-mode logits")

    out = {
        "ids": ids.to(torch.int32),
        "targets": targets.to(torch.int32),
        "logits": logits.contiguous(),
        "loss": loss.detach().reshape(1).float(),
    }
    for pname, p in model.named_parameters():
        out["grad." + pname] = p.grad.detach().float().contiguous()

    d = os.path.join(TESTDATA, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    model.save_pretrained(d, safe_serialization=True)
    save_file(out, os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, loss {loss.item():.6f}, "
          f"logits max |.| {logits.abs().max().item():.3f}, {size} bytes in {os.path.relpath(d, REPO)}")
    return d


def build_cli(tmp):
    """Build the densessm CLI into tmp and return its path."""
    exe = os.path.join(tmp, "densessm")
    subprocess.run(["go", "build", "-o", exe, "./cmd/densessm"], cwd=REPO, check=True)
    return exe


def rel_err(got, want):
    """Max abs difference over max abs value of want."""
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def reverse_check(exe, fixture_dir, tmp):
    """Initialise a model in Go from the fixture's config.json and compare transformers' logits on it."""
    name = os.path.basename(fixture_dir)
    model_dir = os.path.join(tmp, "go-" + name)
    subprocess.run([exe, "init", "--arch", "mamba", "--config", os.path.join(fixture_dir, "config.json"),
                    "--seed", "3", "--out", model_dir], check=True)
    try:
        model, info = MambaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, output_loading_info=True)
    except Exception as e:
        raise AssertionError(f"{name}: transformers refused the model densessm wrote in {model_dir}: {e}") from e
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise AssertionError(f"{name}: transformers loaded the Go checkpoint with problems: {problems}")
    model.eval()
    ids = [3, 0, 17, 42, 5, 5, 9, 31, 1, 60, 22, 8, 13, 2]
    with torch.no_grad():
        want = model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
    for mode in ("parallel", "recurrent"):
        npy = os.path.join(tmp, f"{name}-{mode}.npy")
        subprocess.run([exe, "logits", "--model", model_dir, "--ids", ",".join(map(str, ids)),
                        "--mode", mode, "--out", npy], check=True)
        got = np.load(npy)
        if got.shape != want.shape:
            raise AssertionError(f"{name} {mode}: Go logits have shape {got.shape}, transformers {want.shape}")
        err = rel_err(got, want)
        print(f"reverse {name} ({mode}): Go-initialised model, transformers vs densessm logits: "
              f"max rel err {err:.3e}")
        if not err <= REVERSE_TOL:
            raise AssertionError(f"{name} {mode}: relative error {err:.3e} exceeds {REVERSE_TOL:g}")


def main():
    require_torch_path()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(TESTDATA, exist_ok=True)
    dirs = [make_fixture(name, spec) for name, spec in CONFIGS.items()]
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_cli(tmp)
        for d in dirs:
            reverse_check(exe, d, tmp)
    print("ok")


if __name__ == "__main__":
    main()
