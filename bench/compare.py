"""Side-by-side CPU benchmark of densessm against OpenBLAS and PyTorch (issue 6); run it through bench/compare.sh.

In one run, for each thread count (default 1 and 2), it measures
  (a) SGEMM at 1024x1024x1024 and 256x1024x1024, and 512x1536x1536 with B
      transposed (the shape of a DenseRetNet-350M projection in a 512-token
      prefill, weights stored [out,in]): `densessm bench gemm` and
      OpenBLAS's cblas_sgemm (bench/sgemm_openblas.c), alternating, seven
      rounds each (each run reports the median of 10 calls);
  (b) the read bandwidth of a 1 GiB buffer (bench/membw.c), which divided
      into a model's weight bytes gives its decode bound in tokens/s,
      measured again before every round of (c);
  (c) `densessm bench model` and bench/torch_models.py (PyTorch on the CPU)
      on the same shapes: mamba-130m and DenseRetNet-350M prefill of 512
      tokens and decode steps, alternating, three rounds each; and a
      training step (forward, backward, SGD) of a ~10M-parameter Mamba on
      8 x 128 tokens;
then prints every raw result (JSON, one per line) and a table of ratios with
the issue's targets. The table's figures are the medians of the rounds; its
ratio is the median of the rounds' own ratios (each round's runs are
seconds apart, so a ratio within a round is spared the slower drift of a
shared machine's load). Ratios above 1 mean densessm is faster.

The machine should be otherwise idle: the load average before and after the
run is printed so that a reader can judge the figures.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "bench", "configs")


def run_json(cmd, env=None, unset=()):
    """Run cmd with env added to (and the names in unset removed from) the environment, and return the
    JSON object on the last line of its stdout; exit with its stderr on failure."""
    full_env = dict(os.environ, **(env or {}))
    for name in unset:
        full_env.pop(name, None)
    p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, check=False)
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        sys.exit(f"compare.py: {' '.join(cmd)} failed (status {p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(lines[-1])


class Comparison:
    """Runs the measurements and collects raw results and table rows."""

    def __init__(self, args):
        self.args = args
        self.raw = []
        self.rows = []
        self.openblas_core = "not measured"
        self.openblas_auto = "not measured"

    def record(self, label, result):
        """Keep a raw result for the log, tagged with what produced it."""
        self.raw.append(dict(result, run=label))
        print(f"  {label}: {json.dumps(result)}", file=sys.stderr, flush=True)
        return result

    def row(self, what, threads, ours, theirs, unit, reference, target):
        """Add one table row from the rounds' figures (lists, paired by round; theirs may be
        empty): the medians of both, the median of the rounds' ratios and the target."""
        ratios = [o / t for o, t in zip(ours, theirs) if o and t]
        ratio = statistics.median(ratios) if ratios else float("nan")
        self.rows.append((what, threads, statistics.median(ours), statistics.median(theirs) if theirs else None,
                          unit, reference, ratio, target))

    def thread_env(self, threads):
        """Environment that pins every BLAS and OpenMP pool to the thread count."""
        t = str(threads)
        return {"OPENBLAS_NUM_THREADS": t, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t}

    def gemm(self, threads):
        """(a) SGEMM, densessm against OpenBLAS, alternating runs."""
        a = self.args
        if a.sgemm:
            auto = run_json([a.sgemm, "64", "64", "64", "1"], self.thread_env(threads), unset=["OPENBLAS_CORETYPE"])
            self.openblas_auto = auto["kernel"]
        for m, n, k, trans_b in a.gemm_sizes:
            ours, theirs = [], []
            for r in range(a.rounds):
                env = self.thread_env(threads)
                if a.coretype:
                    env["OPENBLAS_CORETYPE"] = a.coretype
                if a.sgemm:
                    res = self.record(f"openblas {m}x{n}x{k} trans_b={trans_b} t={threads} round {r}",
                                      run_json([a.sgemm, str(m), str(n), str(k), "10", str(int(trans_b))], env))
                    theirs.append(res["gflops"])
                    self.openblas_core = res["kernel"]
                res = self.record(f"densessm gemm {m}x{n}x{k} trans_b={trans_b} t={threads} round {r}",
                                  run_json([a.densessm, "bench", "gemm", "--m", str(m), "--n", str(n),
                                            "--k", str(k), "--threads", str(threads), "--reps", "10"]
                                           + (["--trans-b"] if trans_b else [])))
                ours.append(res["gflops"])
            self.row(f"SGEMM {m}x{n}x{k}" + (" B^T" if trans_b else ""), threads, ours, theirs,
                     "GFLOP/s", "OpenBLAS", ">= 0.85")

    def bandwidth(self, threads, label):
        """(b) read bandwidth in bytes/s (the best of the probe's passes)."""
        res = self.record(f"membw t={threads} {label}",
                          run_json([self.args.membw, str(threads), str(self.args.membw_mib)]))
        return res["gbytes_per_s_best"] * 1e9

    def models(self, threads):
        """(c) models, densessm against PyTorch alternating for a.model_rounds rounds, and decode
        against the bandwidth bound measured before each round."""
        a = self.args
        for arch, config, name in a.models:
            cfg = os.path.join(CONFIGS, config)
            common = ["--config", cfg, "--prefill", str(a.prefill), "--decode", str(a.decode),
                      "--threads", str(threads)]
            ours, theirs, bounds = [], [], []
            for r in range(a.model_rounds):
                bounds.append(self.bandwidth(threads, f"before {name} round {r}"))
                ours.append(self.record(f"densessm {name} t={threads} round {r}",
                                        run_json([a.densessm, "bench", "model", "--arch", arch] + common)))
                theirs.append(self.record(f"torch {name} t={threads} round {r}",
                                          run_json([a.python, os.path.join(ROOT, "bench", "torch_models.py"),
                                                    "--arch", arch] + common, self.thread_env(threads))))
            self.check_same_model(name, ours[0], theirs[0])

            def each(runs, key):
                return [run[key] for run in runs]

            self.row(f"{name} prefill {a.prefill}", threads, each(ours, "prefill_tokens_per_s"),
                     each(theirs, "prefill_tokens_per_s"), "tokens/s", "PyTorch", ">= 1.0")
            self.row(f"{name} decode", threads, each(ours, "decode_tokens_per_s"),
                     each(theirs, "decode_tokens_per_s"), "tokens/s", "PyTorch",
                     ">= 2.0" if arch == "denseretnet" else "> 1.0")
            self.row(f"{name} decode", threads, each(ours, "decode_tokens_per_s"),
                     [bw / ours[0]["weight_bytes"] for bw in bounds], "tokens/s", "bandwidth bound", ">= 0.75")

    def train(self, threads):
        """(c) a training step of the ~10M-parameter Mamba, densessm against PyTorch."""
        a = self.args
        common = ["--config", os.path.join(CONFIGS, a.train_config), "--prefill", "0", "--decode", "0",
                  "--train-step", "--train-batch", str(a.train_batch), "--train-seq", str(a.train_seq),
                  "--threads", str(threads)]
        ours = self.record(f"densessm train t={threads}",
                           run_json([a.densessm, "bench", "model", "--arch", "mamba", "--reps", "3"] + common))
        # One PyTorch step of transformers' torch path takes minutes at this
        # size, so it gets no warm-up step and a single timed one.
        theirs = self.record(f"torch train t={threads}",
                             run_json([a.python, os.path.join(ROOT, "bench", "torch_models.py"), "--arch", "mamba",
                                       "--reps", "1", "--train-warmup", "0"] + common, self.thread_env(threads)))
        self.check_same_model("train model", ours, theirs)
        self.row(f"train step {a.train_batch}x{a.train_seq} ({ours['parameters'] / 1e6:.1f}M Mamba)", threads,
                 [ours["train_tokens_per_s"]], [theirs["train_tokens_per_s"]], "tokens/s", "PyTorch", ">= 2.0")

    @staticmethod
    def check_same_model(name, ours, theirs):
        """Warn when both sides did not build a model of the same size."""
        if ours["parameters"] != theirs["parameters"]:
            print(f"compare.py: warning: {name}: densessm has {ours['parameters']} parameters, "
                  f"PyTorch {theirs['parameters']}", file=sys.stderr)

    def table(self):
        """The ratio table in Markdown."""
        out = ["| measurement | threads | densessm | reference | unit | ratio | target |",
               "| --- | --- | --- | --- | --- | --- | --- |"]
        for what, threads, ours, theirs, unit, ref, ratio, target in self.rows:
            theirs_s = f"{theirs:.4g} ({ref})" if theirs else f"- ({ref} not measured)"
            out.append(f"| {what} | {threads} | {ours:.4g} | {theirs_s} | {unit} | {ratio:.2f} | {target} |")
        return "\n".join(out)


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, or the platform's machine name."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def load_average():
    """The 1-minute load average, or None where the system does not say."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--densessm", required=True, help="the densessm binary")
    ap.add_argument("--sgemm", default="", help="the sgemm_openblas binary (empty: skip OpenBLAS)")
    ap.add_argument("--membw", required=True, help="the membw binary")
    ap.add_argument("--python", required=True, help="the Python with torch and transformers")
    ap.add_argument("--coretype", default="", help="OPENBLAS_CORETYPE for the OpenBLAS runs")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--json-out", default="", help="also write every raw result to this file (JSON lines)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes, to check that the script works (the figures mean nothing)")
    args = ap.parse_args()
    args.rounds, args.model_rounds, args.membw_mib = 7, 3, 1024
    args.gemm_sizes = [(1024, 1024, 1024, False), (256, 1024, 1024, False), (512, 1536, 1536, True)]
    args.models = [("mamba", "mamba-130m.json", "mamba-130m"),
                   ("denseretnet", "denseretnet-350m.json", "DenseRetNet-350M")]
    args.prefill, args.decode = 512, 32
    args.train_config, args.train_batch, args.train_seq = "mamba-10m.json", 8, 128
    if args.quick:
        args.rounds, args.model_rounds, args.membw_mib = 1, 1, 64
        args.gemm_sizes = [(64, 64, 64, False), (64, 64, 64, True)]
        args.models = [("mamba", "mamba-10m.json", "mamba-10m")]
        args.prefill, args.decode = 32, 4
        args.train_batch, args.train_seq = 2, 8
    threads = [int(t) for t in args.threads.split(",")]

    c = Comparison(args)
    load0, start = load_average(), time.time()
    for t in threads:
        print(f"threads {t}:", file=sys.stderr, flush=True)
        c.gemm(t)
        c.models(t)
        c.train(t)
    load1 = load_average()

    if args.json_out:
        with open(args.json_out, "w") as f:
            for r in c.raw:
                f.write(json.dumps(r) + "\n")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {cpu_model()}, "
          f"{os.cpu_count()} CPUs; load average before {load0}, after {load1}; {time.time() - start:.0f} s")
    print(f"OpenBLAS core type: {c.openblas_core} (OPENBLAS_CORETYPE={args.coretype or 'unset'}); "
          f"without OPENBLAS_CORETYPE it picks {c.openblas_auto}")
    print()
    print(c.table())


if __name__ == "__main__":
    main()
