"""Write scripts/gpu-check.sh's Markdown report from the logs of its steps.

Usage: python3 scripts/gpu_check_table.py LOGDIR > gpu-check.md

LOGDIR holds what gpu-check.sh wrote (any file may be missing: a number
that is not there is shown as "missing", never guessed):
  info.txt                  "key: value" lines for the header
  steps.tsv                 name, result, seconds, limit (tab-separated)
  backend.log               go test -v of backends/cuda (the device tests)
  bench.log                 the Go benchmarks (go test -bench output)
  ours-ARCH.log             densessm bench model --backend cuda (its JSON line)
  torch-ARCH.log            bench/torch_models.py --device cuda (its JSON line)
  torch-kernels.log         bench/torch_kernels.py (torch.matmul's and the copy's rates)
for ARCH in mamba and denseretnet: the last line of each that is a JSON
object is read. Standard library only.
"""

import json
import os
import re
import sys

# The targets: ours / reference at least this much.
GEMM_TARGET = 0.90       # of torch.matmul's TFLOP/s
BANDWIDTH_TARGET = 0.50  # of the measured copy bandwidth
DECODE_TARGET = 2.0      # PyTorch's decode tokens/s
TRAIN_TARGET = 1.0       # PyTorch's training tokens/s

MODELS = (("mamba", "mamba-130m"), ("denseretnet", "DenseRetNet-350M"))

# The kernels set against the bandwidth ceiling: benchmark name prefix, label.
KERNELS = (("SelectiveScan/", "selective scan"), ("SelectiveScanGrad/", "selective scan grad"),
           ("Retention/", "retention"), ("RetentionGrad/", "retention grad"))

DEVICE_TEST = re.compile(r"^\s*--- (PASS|FAIL|SKIP): Test\w*(Device|Parity)\w*|^\s*\w+_test\.go:\d+: (device: |no usable GPU)"
                         r"|^(--- FAIL|FAIL|panic)")


def read(logdir, name):
    """The file's text, or None when it is missing."""
    try:
        with open(os.path.join(logdir, name)) as f:
            return f.read()
    except OSError:
        return None


def read_json(logdir, name):
    """The last JSON object line of the file, or None."""
    text = read(logdir, name) or ""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def parse_bench(text):
    """Go benchmark lines -> {name without Benchmark and -P: {unit: value}}; ns/op is kept as "ns/op"."""
    out = {}
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[0].startswith("Benchmark") or not fields[1].isdigit():
            continue
        name = re.sub(r"-\d+$", "", fields[0][len("Benchmark"):])
        metrics = {}
        for value, unit in zip(fields[2::2], fields[3::2]):
            try:
                metrics[unit] = float(value)
            except ValueError:
                pass
        out[name] = metrics
    return out


def fmt(x):
    """A number to 3 significant figures (4 at 1000 and up), or "missing"."""
    if x is None:
        return "missing"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:.3g}"


def row(what, ours, ref, target, note=""):
    """A comparison row: ratio ours/ref and whether it meets target (None: no target)."""
    ratio = ours / ref if ours is not None and ref else None
    met = "—" if target is None or ratio is None else ("yes" if ratio >= target else "**no**")
    goal = "—" if target is None else f"≥ {target:g}"
    return f"| {what} | {fmt(ours)}{note} | {fmt(ref)} | {fmt(ratio)} | {goal} | {met} |"


def host_note(metrics):
    """ " (host)" when the benchmark's op went through the host fallback."""
    return " (host)" if metrics and metrics.get("host/op", 0) > 0 else ""


def comparison(logdir, bench):
    """The comparison table's lines."""
    lines = ["| measurement | ours | reference | ratio | target | met |", "| --- | --- | --- | --- | --- | --- |"]
    tk = read_json(logdir, "torch-kernels.log") or {}
    torch_gemm = {g.get("n"): g.get("tflops") for g in tk.get("gemm") or []}
    sizes = sorted({int(k[len("GEMM/n="):]) for k in bench if k.startswith("GEMM/n=")} | set(torch_gemm))
    for n in sizes:
        m = bench.get(f"GEMM/n={n}")
        lines.append(row(f"GEMM {n}×{n}×{n}, TFLOP/s (ref: torch.matmul)",
                         m and m.get("TFLOP/s"), torch_gemm.get(n), GEMM_TARGET, host_note(m)))
    copy = bench.get("Bandwidth")
    ceiling = copy and copy.get("GB/s")
    lines.append(row("device copy, GB/s read+written (ref: torch copy_)", ceiling,
                     (tk.get("copy") or {}).get("gbps"), None))
    for prefix, label in KERNELS:
        names = sorted(k for k in bench if k.startswith(prefix))
        if not names:
            lines.append(row(f"{label}, GB/s (ref: the copy's)", None, ceiling, BANDWIDTH_TARGET))
        for name in names:
            m = bench[name]
            lines.append(row(f"{label} {name[len(prefix):]}, GB/s (ref: the copy's)",
                             m.get("GB/s"), ceiling, BANDWIDTH_TARGET, host_note(m)))
    for arch, label in MODELS:
        ours, ref = read_json(logdir, f"ours-{arch}.log") or {}, read_json(logdir, f"torch-{arch}.log") or {}
        shape = ours or ref
        prefill = shape.get("prefill_tokens", "?")
        decode = shape.get("decode_tokens", "?")
        batch, seq = shape.get("train_batch", "?"), shape.get("train_seq", "?")
        if shape.get("parameters"):
            label += f" ({shape['parameters'] / 1e6:.3g}M parameters)"
        for what, key, target in ((f"prefill {prefill} tokens", "prefill_tokens_per_s", None),
                                  (f"decode {decode} steps", "decode_tokens_per_s", DECODE_TARGET),
                                  (f"train step {batch}×{seq}", "train_tokens_per_s", TRAIN_TARGET)):
            lines.append(row(f"{label} {what}, tokens/s (ref: PyTorch)", ours.get(key), ref.get(key), target))
    return lines


def report(logdir):
    """The whole Markdown report."""
    out = ["# CUDA backend device check", ""]
    for line in (read(logdir, "info.txt") or "").splitlines():
        if line.strip():
            out.append(f"- {line}")
    torch_side = read_json(logdir, "torch-kernels.log")
    if torch_side:
        out.append(f"- PyTorch: {torch_side.get('framework')} on {torch_side.get('device')}")
    out += ["", "## Steps", "", "| step | result | seconds | limit |", "| --- | --- | --- | --- |"]
    for line in (read(logdir, "steps.tsv") or "").splitlines():
        f = line.split("\t")
        if len(f) == 4:
            out.append(f"| {f[0]} | {f[1]} | {f[2]} | {f[3]} |")
    bench = parse_bench(read(logdir, "bench.log"))
    out += ["", "## Against PyTorch and the bandwidth ceiling, on this GPU", "",
            "ours: densessm's CUDA backend (\"(host)\": the op ran through the host fallback); "
            "ratio: ours / reference; float32 everywhere, TF32 off.", ""]
    out += comparison(logdir, bench)
    out += ["", "## Device tests", "", "```"]
    tests = [line.rstrip() for line in (read(logdir, "backend.log") or "").splitlines() if DEVICE_TEST.search(line)]
    out += tests[:80] or ["(no device test lines: see backend.log)"]
    out += ["```", "", "## Go benchmarks", "", "| benchmark | ns/op | rates |", "| --- | --- | --- |"]
    for name, m in bench.items():
        rates = ", ".join(f"{fmt(v)} {u}" for u, v in m.items() if u != "ns/op")
        out.append(f"| {name} | {fmt(m.get('ns/op'))} | {rates} |")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gpu_check_table.py LOGDIR")
    sys.stdout.write(report(sys.argv[1]))


if __name__ == "__main__":
    main()
