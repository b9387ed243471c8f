"""What crossing from Python into densessm's Go engine costs (issue 14).

Run it with the Python that has the densessm package and `tokenizers`
installed (`make bench-python` uses the PYVENV of `make python-test`). In
one run it measures:
  (a) a trivial call: Tokenizer.token_to_id (one gopy call, a string in and
      an int out) and densessm.version(); the median of many calls;
  (b) logits of 1024 tokens from a model with a 50,280-token vocabulary
      (206 MB of float32s) into NumPy: Model.logits's wall time in Python
      and, in the same call, the Go job's own (the forward pass into the C
      memory it exports); their difference is what crossing costs. For
      scale, `go test ./pybind -bench Logits` times the same pass in a Go
      process into Go's heap and into C memory;
  (c) Tokenizer.encode_batch against Hugging Face tokenizers' encode_batch
      on the same texts (the Go standard library's source files: whole
      files, and their non-empty lines), with the same tokenizer.json,
      alternating rounds; both use every core. The ids are compared too.
      Hugging Face's is timed as it is called (`[e.ids for e in
      hf.encode_batch(texts)]`) and again with Python's cyclic garbage
      collector off, which densessm turns off while it builds the lists.
It prints JSON lines and a table; ratios above 1 mean densessm is faster.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import timeit

import numpy as np

import densessm

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def per_call(fn, number: int, repeat: int = 7) -> float:
    """Median seconds per call of fn over repeat rounds of number calls."""
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number


def go_logits_bench(count: int) -> dict[str, float]:
    """Go's BenchmarkLogits: seconds per op for go-heap and c-memory."""
    out = subprocess.run(["go", "test", "./pybind", "-run", "^$", "-bench", "Logits", "-benchtime", f"{count}x"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    res = {}
    for m in re.finditer(r"BenchmarkLogits/(\S+?)-\d+\s+\d+\s+(\d+) ns/op", out):
        res[m.group(1)] = int(m.group(2)) / 1e9
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=500, help="Go source files for (c)")
    args = ap.parse_args()
    import tokenizers

    print(f"# {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, densessm "
          f"{densessm.version()}, tokenizers {tokenizers.__version__}", flush=True)
    rows = []

    # (a) trivial calls.
    model = densessm.default_model()
    tok = model.tokenizer
    t_id = per_call(lambda: tok.token_to_id("func"), 20000)
    t_ver = per_call(densessm.version, 20000)
    t_enc = per_call(lambda: tok.encode("x"), 5000)
    for name, t in [("token_to_id", t_id), ("version()", t_ver), ("encode('x') (Arrow export)", t_enc)]:
        print(json.dumps({"bench": "call", "name": name, "us": t * 1e6}), flush=True)
        rows.append((f"trivial call: {name}", f"{t * 1e6:.2f} µs", "< 20 µs" if name == "token_to_id" else ""))

    # (b) logits of 1024 x 50280.
    big = densessm.init("mamba", {"model_type": "mamba", "vocab_size": 50280, "hidden_size": 64, "num_hidden_layers": 2,
                                  "state_size": 8, "expand": 2, "time_step_rank": 4}, seed=1)
    ids = (np.arange(1024) * 37) % 50280
    big.logits(ids)
    py, go = [], []
    for _ in range(args.rounds * 5):
        t0 = time.perf_counter()
        out = big.logits(ids)
        py.append(time.perf_counter() - t0)
        go.append(densessm._bridge.timing.seconds)
        del out
    over = statistics.median(p - g for p, g in zip(py, go))
    g = go_logits_bench(5)
    res = {"python_ms": statistics.median(py) * 1e3, "go_job_ms": statistics.median(go) * 1e3,
           "overhead_ms": over * 1e3, "go_bench_heap_ms": g["go-heap"] * 1e3, "go_bench_cmem_ms": g["c-memory"] * 1e3}
    print(json.dumps({"bench": "logits", "T": 1024, "V": 50280, **res}), flush=True)
    rows.append(("logits 1024×50280 into NumPy: Model.logits in Python", f"{res['python_ms']:.1f} ms", ""))
    rows.append(("  of which the Go job (forward pass into C memory)", f"{res['go_job_ms']:.1f} ms", ""))
    rows.append(("  crossing (median of the per-call differences)", f"{res['overhead_ms']:.2f} ms", "< 5 ms"))
    rows.append(("  for scale, a Go process (go test -bench): into Go's heap / into C memory",
                 f"{res['go_bench_heap_ms']:.1f} / {res['go_bench_cmem_ms']:.1f} ms", ""))

    # (c) encode_batch against Hugging Face tokenizers.
    goroot = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip()
    files = sorted(pathlib.Path(goroot, "src").rglob("*.go"))[: args.files]
    texts = [f.read_text(errors="replace") for f in files]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    lines = [l for t in texts for l in t.splitlines() if l.strip()]
    with tempfile.TemporaryDirectory() as d:
        for name, path in [("default model's (4096 tokens)", None), ("gpt2", ROOT / "tokenizer/testdata/gpt2.json")]:
            if path is None:
                path = pathlib.Path(d, "tokenizer.json")
                tok.save(path)
            ours, hf = densessm.Tokenizer.from_file(path), tokenizers.Tokenizer.from_file(str(path))
            for what, batch in [(f"{len(texts)} files", texts), (f"their {len(lines)} lines", lines)]:
                assert ours.encode_batch(batch[:500]) == [e.ids for e in hf.encode_batch(batch[:500])], name
                t_ours, t_hf, t_hf_nogc = [], [], []
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    ours.encode_batch(batch)
                    t_ours.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    [e.ids for e in hf.encode_batch(batch)]
                    t_hf.append(time.perf_counter() - t0)
                    gc.disable()
                    t0 = time.perf_counter()
                    [e.ids for e in hf.encode_batch(batch)]
                    t_hf_nogc.append(time.perf_counter() - t0)
                    gc.enable()
                    gc.collect()
                ratio = statistics.median(h / o for h, o in zip(t_hf, t_ours))
                ratio_nogc = statistics.median(h / o for h, o in zip(t_hf_nogc, t_ours))
                a, b, c = (mb / statistics.median(t) for t in (t_ours, t_hf, t_hf_nogc))
                print(json.dumps({"bench": "encode_batch", "tokenizer": name, "texts": what, "MB": mb,
                                  "densessm_MBps": a, "hf_MBps": b, "hf_nogc_MBps": c, "ratio": ratio,
                                  "ratio_nogc": ratio_nogc}), flush=True)
                rows.append((f"encode_batch of {what} ({mb:.1f} MB), {name} tokenizer: densessm / HF tokenizers "
                             f"(HF with the collector off)",
                             f"{a:.1f} / {b:.1f} ({c:.1f}) MB/s = {ratio:.2f}x ({ratio_nogc:.2f}x)", "> 1x"))

    print("\n| measurement | result | target |\n| --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    sys.exit(main())
