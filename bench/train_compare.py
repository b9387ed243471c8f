"""Training and generation speed of the default model's shape, side by side with the machine's GEMM and PyTorch.

Run it through `make bench-train`. For each thread count (default 1 and 2),
in --rounds alternating rounds, it measures
  - `densessm bench gemm` at 1024x1024x1024: the GEMM GFLOP/s of this
    machine now, the denominator of the model FLOPs utilisation;
  - `densessm bench model --train-step` on the default model's shape
    (bench/configs/default-model.json: DenseMamba, width 192, 6 layers,
    vocabulary 4096, 2.3M parameters) and on the same shape without the
    dense links (plain Mamba), batches of 8 x 256 tokens, the median of 3
    steps: loss, gradients and an SGD update;
  - bench/torch_models.py on the plain Mamba shape (transformers'
    MambaForCausalLM, its torch path; PyTorch has no DenseMamba), one step
    without warm-up, since a step takes many seconds;
  - `densessm bench model` decode tokens/s of the default model's shape
    (generation speed; 256 steps);
then prints the raw results and a table. MFU is model FLOPs utilisation:
6 x parameters x tokens/s over the GEMM GFLOP/s of the same round.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import ROOT, CONFIGS, cpu_model, load_average, run_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--densessm", required=True, help="the densessm binary")
    ap.add_argument("--python", required=True, help="the Python with torch and transformers")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    args = ap.parse_args()
    dense = os.path.join(CONFIGS, "default-model.json")
    plain = os.path.join(CONFIGS, "default-model-mamba.json")
    train = ["--prefill", "0", "--decode", "0", "--train-step", "--train-batch", "8", "--train-seq", "256"]
    rows, raw = [], []
    load0, start = load_average(), time.time()

    def rec(label, res):
        raw.append(dict(res, run=label))
        print(f"  {label}: {json.dumps(res)}", file=sys.stderr, flush=True)
        return res

    for t in [int(x) for x in args.threads.split(",")]:
        env = {"OMP_NUM_THREADS": str(t), "MKL_NUM_THREADS": str(t), "OPENBLAS_NUM_THREADS": str(t)}
        gemm, ours, ours_plain, torch_, decode, m10 = [], [], [], [], [], []
        for r in range(args.rounds):
            gemm.append(rec(f"gemm t={t} r={r}", run_json([args.densessm, "bench", "gemm", "--m", "1024", "--n", "1024",
                                                            "--k", "1024", "--threads", str(t), "--reps", "10"]))["gflops"])
            ours.append(rec(f"densemamba train t={t} r={r}", run_json(
                [args.densessm, "bench", "model", "--arch", "densemamba", "--config", dense, "--threads", str(t),
                 "--reps", "3"] + train)))
            ours_plain.append(rec(f"mamba train t={t} r={r}", run_json(
                [args.densessm, "bench", "model", "--arch", "mamba", "--config", plain, "--threads", str(t),
                 "--reps", "3"] + train)))
            if not args.no_torch:
                torch_.append(rec(f"torch mamba train t={t} r={r}", run_json(
                    [args.python, os.path.join(ROOT, "bench", "torch_models.py"), "--arch", "mamba", "--config", plain,
                     "--threads", str(t), "--reps", "1", "--train-warmup", "0"] + train, env)))
            m10.append(rec(f"mamba-10m train t={t} r={r}", run_json(
                [args.densessm, "bench", "model", "--arch", "mamba", "--config", os.path.join(CONFIGS, "mamba-10m.json"),
                 "--threads", str(t), "--reps", "3", "--prefill", "0", "--decode", "0", "--train-step",
                 "--train-batch", "8", "--train-seq", "128"])))
            decode.append(rec(f"densemamba decode t={t} r={r}", run_json(
                [args.densessm, "bench", "model", "--arch", "densemamba", "--config", dense, "--threads", str(t),
                 "--prefill", "0", "--decode", "256"])))
        med = statistics.median
        for name, runs in (("DenseMamba (default model)", ours), ("Mamba, same shape", ours_plain),
                           ("Mamba 9.5M (mamba-10m.json, 8x128)", m10)):
            tps = [x["train_tokens_per_s"] for x in runs]
            mfu = [6 * x["parameters"] * x["train_tokens_per_s"] / (g * 1e9) for x, g in zip(runs, gemm)]
            rows.append((f"train {name}", t, f"{med(tps):.0f} tok/s", f"{100 * med(mfu):.1f}%"))
        if torch_:
            tps = [x["train_tokens_per_s"] for x in torch_]
            ratio = med([o["train_tokens_per_s"] / p["train_tokens_per_s"] for o, p in zip(ours_plain, torch_)])
            rows.append(("train Mamba, PyTorch", t, f"{med(tps):.1f} tok/s", f"densessm/PyTorch {ratio:.1f}x"))
        rows.append(("GEMM 1024^3", t, f"{med(gemm):.1f} GFLOP/s", ""))
        rows.append(("decode DenseMamba (default model)", t, f"{med([x['decode_tokens_per_s'] for x in decode]):.0f} tok/s", ""))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {cpu_model()}, {os.cpu_count()} CPUs; "
          f"load average before {load0}, after {load_average()}; {time.time() - start:.0f} s")
    print()
    print("| measurement | threads | result | note |")
    print("| --- | --- | --- | --- |")
    for what, t, res, note in rows:
        print(f"| {what} | {t} | {res} | {note} |")


if __name__ == "__main__":
    main()
