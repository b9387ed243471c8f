"""PyTorch side of bench/compare.sh: time the same model shapes as `densessm bench model`.

It builds a randomly initialised model on the CPU (or, with --device cuda,
on the GPU) in float32 and prints one JSON line with the fields of `densessm
bench model` (arch, parameters, weight_bytes, threads, prefill_tokens,
prefill_tokens_per_s, decode_tokens, decode_tokens_per_s, and with
--train-step train_step_seconds, train_tokens_per_s, train_loss), measured
the same way:

  prefill  the parallel form over --prefill random tokens, no gradient: the
           median of --reps runs after a 16-token warm-up;
  decode   --decode one-token steps through the model's recurrent/cache path
           after one untimed step;
  train    zero_grad, forward, cross-entropy, backward and torch.optim.SGD's
           step on --train-batch x --train-seq random tokens: the median of
           --reps steps after --train-warmup untimed steps (default 1).

Models:
  mamba        transformers' MambaForCausalLM from a Hugging Face config.json
               (bench/configs/mamba-130m.json, mamba-10m.json), on its
               torch-only path: the script refuses to run when mamba_ssm or
               causal_conv1d is importable, and switches off the Hub kernels
               of the `kernels` package (USE_HUB_KERNELS=0, read when
               transformers is imported; transformers 5.25 requires kernels,
               5.24 does not), refusing when USE_HUB_KERNELS was set on.
               Decode goes through its cache (conv and SSM states).
  denseretnet  scripts/denseretnet_reference.py's DenseRetNetForCausalLM (the
               official DenseSSM model re-stated), from the toolkit's
               denseretnet config form (bench/configs/denseretnet-350m.json).
               Decode runs its recurrent form (per-layer retention state)
               one position at a time.

Usage (PYTHON: the environment `make pyref` builds, ~/.cache/densessm/pyref/bin/python):
  $PYTHON bench/torch_models.py --arch mamba \
      --config bench/configs/mamba-130m.json --prefill 512 --decode 32 --threads 1

With --device cuda (scripts/gpu-check.sh) the model, its inputs and its
states live on the GPU, the arithmetic stays float32 with TF32 off (as the
densessm CUDA backend's cuBLAS calls), every timed interval begins and ends
with torch.cuda.synchronize(), and the JSON adds "device" (the GPU's name).
The random token ids are drawn on the CPU as without it.

With --save DIR (mamba) it also writes the random model as save_pretrained
does (config.json, model.safetensors), for bench/llamacpp.sh to convert.

Requirements: torch (tested with 2.15.0), transformers (tested with 5.24.0,
the pin of scripts/requirements-pyref.txt, and 5.25.0 with kernels 0.19.1);
scripts/requirements-pyref.txt pins both.
"""

import argparse
import importlib.util
import inspect
import json
import os
import statistics
import sys
import time

# transformers reads this when it is imported: with the `kernels` package
# installed it would otherwise replace Mamba's torch functions with kernels
# fetched from the Hugging Face Hub (decorators in
# transformers.integrations.hub_kernels).
os.environ.setdefault("USE_HUB_KERNELS", "0")

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require_torch_path():
    """Exit when an optimised Mamba kernel could replace transformers' torch path: mamba_ssm or
    causal_conv1d importable, or the Hub kernels of the `kernels` package switched on."""
    for pkg in ("mamba_ssm", "causal_conv1d"):
        if importlib.util.find_spec(pkg) is not None:
            sys.exit(f"torch_models.py: {pkg} is importable: it would replace transformers' "
                     "torch-only Mamba path; use a venv without it")
    if importlib.util.find_spec("kernels") is not None:
        from transformers.integrations import hub_kernels

        enabled = getattr(hub_kernels, "_kernels_enabled", True)  # a bool in 5.24, a function in 5.25
        if enabled() if callable(enabled) else enabled:
            sys.exit("torch_models.py: kernels is importable and USE_HUB_KERNELS="
                     f"{os.environ.get('USE_HUB_KERNELS')} switches its Hub kernels on: they would replace "
                     "transformers' torch-only Mamba path; unset USE_HUB_KERNELS or set it to 0")


class MambaRunner:
    """transformers' MambaForCausalLM with its cache for decoding."""

    def __init__(self, cfg_json):
        from transformers import MambaConfig, MambaForCausalLM

        require_torch_path()
        self.model = MambaForCausalLM(MambaConfig(**cfg_json))
        self.vocab = self.model.config.vocab_size
        self.cache = None
        # The decoding cache's argument and output field: "cache" in transformers 5.24,
        # "cache_params" in 5.17 (the GPU machine's).
        params = inspect.signature(self.model.forward).parameters
        self.cache_name = "cache" if "cache" in params else "cache_params"

    def logits(self, ids):
        """Parallel form: ids [B,T] -> logits [B,T,V]."""
        return self.model(ids, use_cache=False).logits

    def start(self):
        """Forget the decoding state."""
        self.cache = None

    def step(self, ids):
        """One token per sequence, ids [B,1], continuing from the cache."""
        out = self.model(ids, use_cache=True, **{self.cache_name: self.cache})
        self.cache = getattr(out, self.cache_name)
        return out.logits


class DenseRetNetRunner:
    """The reference DenseRetNet with a recurrent decoding state kept between steps."""

    def __init__(self, cfg_json):
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        from denseretnet_reference import DenseRetNetConfig, DenseRetNetForCausalLM

        dense = cfg_json.get("dense", {})
        d = cfg_json["hidden_size"]
        if dense.get("projection", "identity") != "identity" or dense.get("gate", "silu-mlp") != "silu-mlp" \
                or dense.get("fusion", "add") != "add" or dense.get("norm", "rmsnorm") != "rmsnorm":
            sys.exit("torch_models.py: the reference DenseRetNet has only the official dense knobs "
                     "(identity, silu-mlp, add, rmsnorm)")
        if cfg_json["value_dim"] % d:
            sys.exit("torch_models.py: value_dim must be a multiple of hidden_size (v_factor)")
        gate_ratio = dense.get("gate_ratio", 32)
        cfg = DenseRetNetConfig(
            vocab_size=cfg_json["vocab_size"], hidden_size=d, query_key_dim=cfg_json["query_key_dim"],
            num_attention_heads=cfg_json["num_attention_heads"], num_hidden_layers=cfg_json["num_hidden_layers"],
            v_factor=cfg_json["value_dim"] // d, dense_block_layers=dense.get("m", 2),
            rms_norm_eps=cfg_json.get("rms_norm_eps", 1e-6), intermediate_k_select_scale=gate_ratio,
            intermediate_v_select_scale=cfg_json.get("dense_v_gate_ratio", gate_ratio),
            pad_token_id=cfg_json.get("pad_token_id"))
        self.model = DenseRetNetForCausalLM(cfg)
        self.vocab = cfg.vocab_size
        self.caches, self.pos = None, 0

    def logits(self, ids):
        """Parallel form: ids [B,T] -> logits [B,T,V]."""
        return self.model(ids)

    def start(self):
        """Forget the decoding state."""
        self.caches, self.pos = [{} for _ in self.model.model.layers], 0

    def step(self, ids):
        """One token per sequence, ids [B,1], through the recurrent form at the next position."""
        net = self.model
        rel = net.model.retnet_rel_pos.recurrent(self.pos)
        x = net.model.embed_tokens(ids[:, 0])
        caches = self.caches
        out = net._run_layers(
            x, lambda attn, u, dense, ks, vs, i: attn.forward_step(u, rel, dense, ks, vs, caches[i]))
        self.pos += 1
        return out


RUNNERS = {"mamba": MambaRunner, "denseretnet": DenseRetNetRunner}


def median_time(fn, reps, sync):
    """The median wall time of reps calls of fn, each between two calls of sync."""
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True, choices=sorted(RUNNERS))
    ap.add_argument("--config", required=True, help="config.json of the model shape")
    ap.add_argument("--prefill", type=int, default=512, help="tokens of the timed prefill (0 skips it)")
    ap.add_argument("--decode", type=int, default=32, help="timed decode steps (0 skips them)")
    ap.add_argument("--reps", type=int, default=1, help="timed prefills and training steps (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="where the model runs (cuda: float32 with TF32 off, synchronised timings)")
    ap.add_argument("--train-step", action="store_true", help="also time a training step")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train-warmup", type=int, default=1,
                    help="untimed training steps before the timed ones (0 where one step takes minutes)")
    ap.add_argument("--save", default="",
                    help="also save the random model here (mamba: config.json and model.safetensors, "
                         "as save_pretrained writes them; bench/llamacpp.sh converts it to GGUF)")
    args = ap.parse_args()
    if min(args.reps, args.threads, args.train_batch, args.train_seq) < 1 \
            or min(args.prefill, args.decode, args.train_warmup) < 0:
        ap.error("--reps, --threads, --train-batch and --train-seq must be positive; "
                 "--prefill, --decode and --train-warmup not negative")

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(1)
    with open(args.config) as f:
        runner = RUNNERS[args.arch](json.load(f))
    model = runner.model.float().eval().to(device)
    if args.save:
        if args.arch != "mamba":
            sys.exit("torch_models.py: --save is for --arch mamba")
        model.save_pretrained(args.save, safe_serialization=True)
    params = list(model.parameters())
    rep = {
        "arch": args.arch, "framework": f"torch {torch.__version__}",
        "parameters": sum(p.numel() for p in params),
        "weight_bytes": sum(p.numel() * p.element_size() for p in params),
        "threads": torch.get_num_threads(), "reps": args.reps,
        "prefill_tokens": args.prefill, "prefill_seconds": None, "prefill_tokens_per_s": None,
        "decode_tokens": args.decode, "decode_tokens_per_s": None,
    }
    if device.type == "cuda":
        rep["device"] = torch.cuda.get_device_name(device)
    gen = torch.Generator().manual_seed(1)

    def random_ids(*shape):
        return torch.randint(0, runner.vocab, shape, generator=gen).to(device)

    with torch.no_grad():
        if args.prefill:
            ids = random_ids(1, args.prefill)
            runner.logits(ids[:, :16])
            sec = median_time(lambda: runner.logits(ids), args.reps, sync)
            rep["prefill_seconds"], rep["prefill_tokens_per_s"] = sec, args.prefill / sec
        if args.decode:
            ids = random_ids(1, args.decode + 1)
            runner.start()
            runner.step(ids[:, :1])
            sync()
            start = time.perf_counter()
            for t in range(1, args.decode + 1):
                runner.step(ids[:, t:t + 1])
            sync()
            rep["decode_tokens_per_s"] = args.decode / (time.perf_counter() - start)

    if args.train_step:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=args.lr)
        seq = random_ids(args.train_batch, args.train_seq + 1)
        inputs, targets = seq[:, :-1], seq[:, 1:]
        loss_value = []

        def train_step():
            opt.zero_grad()
            logits = runner.logits(inputs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            loss.backward()
            opt.step()
            loss_value.append(loss.item())

        for _ in range(args.train_warmup):
            train_step()
        sec = median_time(train_step, args.reps, sync)
        rep.update(train_batch=args.train_batch, train_seq=args.train_seq, train_step_seconds=sec,
                   train_tokens_per_s=args.train_batch * args.train_seq / sec, train_loss=loss_value[-1])
    print(json.dumps(rep))


if __name__ == "__main__":
    main()
