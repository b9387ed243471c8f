"""Side-by-side CPU benchmark of densessm against OpenBLAS and PyTorch (issue 6); run it through bench/compare.sh.

In one run, for each thread count (default 1 and 2), it measures
  (a) SGEMM at 1024x1024x1024 and 256x1024x1024, and 512x1536x1536 with B
      transposed (the shape of a DenseRetNet-350M projection in a 512-token
      prefill, weights stored [out,in]): `densessm bench gemm` and
      OpenBLAS's cblas_sgemm (bench/sgemm_openblas.c), alternating, seven
      rounds each (each run reports the median of 10 calls);
  (b) the read bandwidth of a 1 GiB buffer (bench/membw.c: 1, 4 and 8
      interleaved sequential streams per thread, best of 5 passes; the best
      of those is the bound), which divided into a model's weight bytes
      gives its decode bound in tokens/s, measured again before every round
      of (c) and (d);
  (c) `densessm bench model` and bench/torch_models.py (PyTorch on the CPU)
      on the same shapes: mamba-130m and DenseRetNet-350M prefill of 512
      tokens and decode steps, alternating, three rounds each, and densessm's
      decode with q8 weights against PyTorch's float32; and a
      training step (forward, backward, SGD) of a ~10M-parameter Mamba on
      8 x 128 tokens;
  (d) with --llamacpp (bench/compare.sh passes it from bench/llamacpp.sh):
      mamba-130m in llama.cpp's llama-bench against `densessm bench model
      --weights W`, for W in f32, bf16 and q8 (GGUF f32, bf16 and q8_0 of
      the random model bench/torch_models.py builds): prefill of 512 tokens
      (pp512; with --pp4096 also 4096; densessm with --prefill-last, which
      like llama-bench computes the logits of the last position only) and
      128 decode steps (tg128), each a
      process of its own whose peak RSS (ru_maxrss) is recorded, alternating
      densessm and llama.cpp, three rounds; each decode row is set against
      the bandwidth bound, read bandwidth / weight bytes per token (4 bytes
      a matrix weight for f32, 2 for bf16, 34/32 for q8: int8 and a 16-bit
      scale per 32, a matrix whose rows are not a multiple of 32 long staying
      float32; the vectors and the SSM's A, D, conv and norm parameters stay
      float32; llama.cpp's bound uses the tensor bytes llama-bench reports,
      as its q8_0 file keeps such a matrix in f16). A run that fails (a
      signal such as SIGILL, a non-zero exit) is reported in its row with the
      reason, not left out;
then prints every raw result (JSON, one per line), a table of ratios with
the issue's targets and, with (d), a table of densessm against llama.cpp.
The tables' figures are the medians of the rounds; their ratio is the median
of the rounds' own ratios (each round's runs are seconds apart, so a ratio
within a round is spared the slower drift of a shared machine's load).
Ratios above 1 mean densessm is faster.

The machine should be otherwise idle: the load average before and after the
run is printed so that a reader can judge the figures.
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
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


def run_measured(cmd, env=None):
    """Run cmd (env added to the environment) as a process of its own and return (ok, result, why, maxrss_bytes):
    the JSON on the last line of stdout that parses (a list or an object), or why it failed: the signal that
    killed it (SIGILL, ...) or its exit status, with the last line of its stderr. The peak RSS is the child's
    ru_maxrss from wait4."""
    full_env = dict(os.environ, **(env or {}))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=full_env)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    rss = usage.ru_maxrss * 1024  # KiB on Linux
    tail = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    if p.returncode < 0:
        try:
            name = signal.Signals(-p.returncode).name
        except ValueError:
            name = f"signal {-p.returncode}"
        return False, None, f"killed by {name}" + (f" ({tail[:160]})" if tail else ""), rss
    if p.returncode != 0:
        return False, None, f"exit status {p.returncode}: {tail[:200]}", rss
    text = stdout.strip()
    for candidate in (text, text.splitlines()[-1] if text else ""):
        try:
            return True, json.loads(candidate), "", rss
        except ValueError:
            continue
    return False, None, f"no JSON in its output: {text[-200:]!r}", rss


# Bytes a weight of the projection matrices takes at each --weights value of `densessm bench model`, and the
# GGUF type of llama.cpp that stores it the same way. q8 is int8 with one 16-bit scale per 32 weights along a
# row, so a matrix whose rows are not a multiple of 32 long stays float32 (Mamba's dt_proj, rows of
# time_step_rank 48 in mamba-130m).
WEIGHT_BYTES = {"f32": 4.0, "bf16": 2.0, "q8": 34 / 32}
GGUF_TYPE = {"f32": "f32", "bf16": "bf16", "q8": "q8_0"}


def mamba_weights(cfg):
    """The parameters of a Mamba config (Hugging Face form) as (matrices, other): matrices a list of
    (rows, row length), the embedding (tied to the head, so read whole once per decode step) and each layer's
    in_proj, x_proj, dt_proj and out_proj weights; other the count of the rest (the conv filters and biases,
    dt_proj's bias, A_log, D and the norms), which stays float32 whatever the weights' type."""
    d, n, layers = cfg["hidden_size"], cfg.get("state_size", 16), cfg["num_hidden_layers"]
    e = cfg.get("intermediate_size") or cfg.get("expand", 2) * d
    r = cfg.get("time_step_rank", "auto")
    r = -(-d // 16) if r == "auto" else r
    k, vocab = cfg.get("conv_kernel", 4), cfg["vocab_size"]
    matrices = [(vocab, d)] * (1 if cfg.get("tie_word_embeddings", True) else 2)
    matrices += [(2 * e, d), (r + 2 * n, e), (e, r), (d, e)] * layers
    other = layers * (e * k + (e if cfg.get("use_conv_bias", True) else 0) + e + e * n + e + d) + d
    if cfg.get("use_bias", False):
        other += layers * (2 * e + d)
    return matrices, other


def weight_bytes(matrices, other, dtype):
    """Bytes a decode step reads at least once with the matrices stored as dtype (see WEIGHT_BYTES)."""
    total = other * 4.0
    for rows, cols in matrices:
        total += rows * cols * (4.0 if dtype == "q8" and cols % 32 else WEIGHT_BYTES[dtype])
    return total


def failed_note(whys, rounds):
    """'failed in k of n rounds: reason' for a cell, 'not run ...', or ''."""
    whys = [w for w in whys if w]
    if not whys:
        return ""
    if whys[0].startswith("not run"):
        return whys[0]
    return f"failed in {len(whys)} of {rounds} rounds: {whys[0]}"


class Comparison:
    """Runs the measurements and collects raw results and table rows."""

    def __init__(self, args):
        self.args = args
        self.raw = []
        self.rows = []
        self.llama_rows = []
        self.llama_bytes = {}  # llama.cpp's model_size per weight type
        self.notes = []
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
        """(b) read bandwidth in bytes/s: the best of the probe's passes over its stream counts (1, 4 and 8
        interleaved sequential streams per thread)."""
        res = self.record(f"membw t={threads} {label}",
                          run_json([self.args.membw, str(threads), str(self.args.membw_mib), "5",
                                    self.args.membw_streams]))
        return res["gbytes_per_s_best"] * 1e9

    def models(self, threads):
        """(c) models, densessm against PyTorch alternating for a.model_rounds rounds, and decode
        against the bandwidth bound measured before each round."""
        a = self.args
        for arch, config, name in a.models:
            cfg = os.path.join(CONFIGS, config)
            common = ["--config", cfg, "--prefill", str(a.prefill), "--decode", str(a.decode),
                      "--threads", str(threads)]
            ours, q8, theirs, bounds = [], [], [], []
            for r in range(a.model_rounds):
                bounds.append(self.bandwidth(threads, f"before {name} round {r}"))
                ours.append(self.record(f"densessm {name} t={threads} round {r}",
                                        run_json([a.densessm, "bench", "model", "--arch", arch] + common)))
                q8.append(self.record(f"densessm {name} --weights q8 decode t={threads} round {r}",
                                      run_json([a.densessm, "bench", "model", "--arch", arch, "--weights", "q8",
                                                "--config", cfg, "--prefill", "0", "--decode", str(a.decode),
                                                "--threads", str(threads)])))
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
            self.row(f"{name} decode, q8 weights", threads, each(q8, "decode_tokens_per_s"),
                     each(theirs, "decode_tokens_per_s"), "tokens/s", "PyTorch f32",
                     ">= 3.0" if arch == "denseretnet" else "> 1.0")
            self.row(f"{name} decode, q8 weights", threads, each(q8, "decode_tokens_per_s"),
                     [bw / q8[0]["weight_bytes"] for bw in bounds], "tokens/s", "bandwidth bound", ">= 0.85")

    def reps_for(self, prefill):
        """Timed repetitions (densessm --reps, llama-bench -r) of a run of the llama.cpp comparison:
        --llama-reps, but one for prefills longer than 512 tokens (a 4096-token prefill takes 20-30 s
        here). densessm times its decode steps once whatever --reps says; llama-bench's tg runs -r times."""
        return self.args.llama_reps if prefill <= 512 else 1

    def densessm_measured(self, label, weights, prefill, decode, threads):
        """One `densessm bench model` run of the llama.cpp comparison's model, as a process of its own:
        (result or None, why it failed, peak RSS in bytes)."""
        a = self.args
        cmd = [a.densessm, "bench", "model", "--arch", "mamba", "--config", os.path.join(CONFIGS, a.llama_config),
               "--prefill", str(prefill), "--decode", str(decode), "--threads", str(threads),
               "--reps", str(self.reps_for(prefill))]
        cmd += ["--weights", weights, "--prefill-last"]
        ok, res, why, rss = run_measured(cmd)
        self.record(label, dict(res, peak_rss_bytes=rss) if ok else {"failed": why, "peak_rss_bytes": rss})
        return (res if ok else None), why, rss

    def llama_measured(self, label, gguf_type, prefill, gen, threads):
        """One llama-bench run (-p prefill -n gen, -r reps, JSON output) as a process of its own: (tokens/s,
        the median of its repetitions' samples, or None; why it failed; peak RSS in bytes; its model's tensor
        bytes)."""
        a, info = self.args, self.args.llamacpp
        model = os.path.join(info["models"], f"{os.path.splitext(a.llama_config)[0]}-{gguf_type}.gguf")
        cmd = [info["llama_bench"], "-m", model, "-p", str(prefill), "-n", str(gen), "-t", str(threads),
               "-r", str(self.reps_for(prefill)), "-o", "json"] + a.llama_bench_args.split()
        ok, res, why, rss = run_measured(cmd, self.thread_env(threads))
        if ok and not (isinstance(res, list) and res):
            ok, why = False, f"llama-bench printed no result: {json.dumps(res)[:200]}"
        if not ok:
            if "SIGILL" in why:
                why += "; an instruction this CPU lacks (a repacked q8_0 kernel, AMX on Sapphire Rapids: try " \
                       "--llama-bench-args='--repack 0')"
            self.record(label, {"failed": why, "peak_rss_bytes": rss, "cmd": cmd})
            return None, why, rss, None
        r = res[-1]
        keep = {k: r.get(k) for k in ("build_commit", "cpu_info", "model_type", "model_size", "model_n_params",
                                      "n_threads", "n_prompt", "n_gen", "n_batch", "n_ubatch", "avg_ts",
                                      "stddev_ts", "samples_ts", "repack")}
        self.record(label, dict(keep, peak_rss_bytes=rss))
        samples = r.get("samples_ts") or [r["avg_ts"]]
        return statistics.median(samples), "", rss, r.get("model_size")

    def llamacpp(self, threads):
        """(d) mamba-130m: densessm against llama.cpp per weight type, prefill and decode, each in its own
        process (peak RSS), alternating, with the bandwidth measured before each round."""
        a = self.args
        with open(os.path.join(CONFIGS, a.llama_config)) as f:
            matrices, other = mamba_weights(json.load(f))
        params = sum(r * c for r, c in matrices) + other
        prefills = [a.prefill] + ([4096] if a.pp4096 else [])
        phases = [(f"prefill {p}", p, 0) for p in prefills] + [(f"decode {a.llama_decode}", 0, a.llama_decode)]
        # per (dtype, phase): lists over rounds
        ours = {(w, ph[0]): [] for w in a.dtypes for ph in phases}
        theirs = {k: [] for k in ours}
        bounds = []
        checked = set()
        for r in range(a.model_rounds):
            bounds.append(self.bandwidth(threads, f"before llama.cpp round {r}"))
            for w in a.dtypes:
                for name, p, n in phases:
                    o = self.densessm_measured(f"densessm {a.llama_config} --weights {w} {name} t={threads} "
                                               f"round {r}", w, p, n, threads)
                    t = self.llama_measured(f"llama.cpp {GGUF_TYPE[w]} {name} t={threads} round {r}",
                                            GGUF_TYPE[w], p, n, threads)
                    ours[(w, name)].append(o)
                    theirs[(w, name)].append(t)
                    if o[0] and (w, "params") not in checked:
                        checked.add((w, "params"))
                        want = weight_bytes(matrices, other, w)
                        if o[0]["parameters"] != params:
                            self.notes.append(f"densessm's {a.llama_config} has {o[0]['parameters']} parameters, "
                                              f"the bound counts {params}")
                        elif "weights" in o[0] and abs(o[0]["weight_bytes"] - want) > 0.001 * want:
                            self.notes.append(f"densessm --weights {w} reports {o[0]['weight_bytes']} weight bytes, "
                                              f"the bound counts {want:.0f}")
                    if t[0] and (w, "llama") not in checked:
                        checked.add((w, "llama"))
                        self.llama_bytes[w] = t[3]
        for w in a.dtypes:
            per_token = weight_bytes(matrices, other, w)
            # llama.cpp's own tensor bytes (model_size) where it said: its q8_0 file keeps dt_proj in f16
            llama_per_token = self.llama_bytes.get(w) or per_token
            for name, p, n in phases:
                key = "decode_tokens_per_s" if n else "prefill_tokens_per_s"
                o_runs, t_runs = ours[(w, name)], theirs[(w, name)]
                o_vals = [run[0][key] if run[0] else None for run in o_runs]
                t_vals = [run[0] for run in t_runs]
                bound = [bw / per_token for bw in bounds] if n else None
                llama_bound = [bw / llama_per_token for bw in bounds] if n else None
                self.llama_row(name, w, threads, o_vals, t_vals,
                               [run[2] for run in o_runs], [run[2] for run in t_runs],
                               failed_note([run[1] for run in o_runs], len(o_runs)),
                               failed_note([run[1] for run in t_runs], len(t_runs)), bound, llama_bound)

    def llama_row(self, what, dtype, threads, ours, theirs, ours_rss, theirs_rss, ours_why, theirs_why, bounds,
                  llama_bounds):
        """Add one row of the llama.cpp table: medians over the rounds (None where a run failed), the median of
        the rounds' ratios, the peak RSS (largest over the rounds) and, for decode, each side's median
        fraction of its bandwidth bound (bandwidth measured in its round / its bytes per token)."""
        def med(xs):
            xs = [x for x in xs if x]
            return statistics.median(xs) if xs else None

        ratios = [o / t for o, t in zip(ours, theirs) if o and t]
        frac = {}
        if bounds:
            frac["ours"] = med([v / b for v, b in zip(ours, bounds) if v])
            frac["theirs"] = med([v / b for v, b in zip(theirs, llama_bounds) if v])
        self.llama_rows.append(dict(
            what=what, dtype=dtype, threads=threads, ours=med(ours), theirs=med(theirs),
            ratio=statistics.median(ratios) if ratios else None,
            ours_rss=max([x for x in ours_rss if x] or [0]) or None,
            theirs_rss=max([x for x in theirs_rss if x] or [0]) or None,
            ours_why=ours_why, theirs_why=theirs_why, bound=med(bounds) if bounds else None,
            llama_bound=med(llama_bounds) if llama_bounds else None,
            ours_frac=frac.get("ours"), theirs_frac=frac.get("theirs")))

    def llama_table(self):
        """The densessm-against-llama.cpp table in Markdown."""
        def num(x, why=""):
            s = f"{x:.4g}" if x else "-"
            return f"{s} ({why})" if why else s

        def mb(x):
            return f"{x / 1e6:.0f} MB" if x else "-"

        def pct(x):
            return f"{100 * x:.0f}%" if x else "-"

        def bound(ours, theirs):
            if not ours:
                return "-"
            return num(ours) if not theirs or abs(theirs - ours) < 0.005 * ours else f"{ours:.4g} / {theirs:.4g}"

        out = ["| measurement | weights | threads | densessm | llama.cpp | unit | densessm / llama.cpp | "
               "densessm peak RSS | llama.cpp peak RSS | bound (tokens/s) | densessm / bound | llama.cpp / bound |",
               "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.llama_rows:
            cells = [r["what"], f"{r['dtype']} / {GGUF_TYPE[r['dtype']]}", str(r["threads"]),
                     num(r["ours"], r["ours_why"]), num(r["theirs"], r["theirs_why"]), "tokens/s",
                     f"{r['ratio']:.2f}" if r["ratio"] else "-", mb(r["ours_rss"]), mb(r["theirs_rss"]),
                     bound(r["bound"], r["llama_bound"]), pct(r["ours_frac"]), pct(r["theirs_frac"])]
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)

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
    ap.add_argument("--parts", default="gemm,models,train,llamacpp",
                    help="comma-separated parts to run: gemm, models, train, llamacpp (default: all; llamacpp "
                         "only with --llamacpp)")
    ap.add_argument("--llamacpp", default="",
                    help="the JSON line bench/llamacpp.sh prints (llama-bench, the GGUF directory, versions); "
                         "empty: no llama.cpp rows")
    ap.add_argument("--llamacpp-skipped", default="", help="why llama.cpp is not measured (for the header)")
    ap.add_argument("--dtypes", default="f32,bf16,q8",
                    help="weight types of the llama.cpp comparison (densessm --weights: f32, bf16, q8)")
    ap.add_argument("--pp4096", action="store_true", help="also a 4096-token prefill in the llama.cpp comparison")
    ap.add_argument("--llama-reps", type=int, default=3,
                    help="llama-bench -r, and densessm's --reps of the prefill, in the llama.cpp comparison")
    ap.add_argument("--llama-bench-args", default="",
                    help="more llama-bench options, e.g. '--repack 0'")
    ap.add_argument("--model-rounds", dest="model_rounds_arg", type=int, default=0,
                    help="alternating rounds of the model and llama.cpp comparisons (default 3, 1 with --quick)")
    args = ap.parse_args()
    args.parts = set(args.parts.split(","))
    if args.parts - {"gemm", "models", "train", "llamacpp"}:
        ap.error(f"--parts: unknown {sorted(args.parts - {'gemm', 'models', 'train', 'llamacpp'})}")
    args.dtypes = args.dtypes.split(",")
    if set(args.dtypes) - set(WEIGHT_BYTES):
        ap.error(f"--dtypes: one of {sorted(WEIGHT_BYTES)} each")
    args.llamacpp = json.loads(args.llamacpp) if args.llamacpp else None
    args.rounds, args.model_rounds, args.membw_mib = 7, 3, 1024
    args.membw_streams = "1,4,8"
    args.llama_config, args.llama_decode = "mamba-130m.json", 128
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
        args.llama_config, args.llama_decode, args.llama_reps, args.pp4096 = "mamba-10m.json", 4, 1, False
    if args.model_rounds_arg < 0 or args.llama_reps < 1:
        ap.error("--model-rounds must not be negative, --llama-reps must be positive")
    if args.model_rounds_arg:
        args.model_rounds = args.model_rounds_arg
    threads = [int(t) for t in args.threads.split(",")]

    c = Comparison(args)
    load0, start = load_average(), time.time()
    for t in threads:
        print(f"threads {t}:", file=sys.stderr, flush=True)
        if "gemm" in args.parts:
            c.gemm(t)
        if "models" in args.parts:
            c.models(t)
        if "train" in args.parts:
            c.train(t)
        if "llamacpp" in args.parts and args.llamacpp:
            c.llamacpp(t)
    load1 = load_average()

    if args.json_out:
        with open(args.json_out, "w") as f:
            for r in c.raw:
                f.write(json.dumps(r) + "\n")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {cpu_model()}, "
          f"{os.cpu_count()} CPUs; load average before {load0}, after {load1}; {time.time() - start:.0f} s")
    print(f"OpenBLAS core type: {c.openblas_core} (OPENBLAS_CORETYPE={args.coretype or 'unset'}); "
          f"without OPENBLAS_CORETYPE it picks {c.openblas_auto}")
    if c.llama_rows:
        info = args.llamacpp
        print(f"llama.cpp: llama-bench of llama-cpp-python {info.get('llama_cpp_python')} (llama.cpp "
              f"{info.get('llama_cpp_commit')}), GGUF by its convert_hf_to_gguf.py with gguf {info.get('gguf')}"
              + (f"; llama-bench {args.llama_bench_args}" if args.llama_bench_args else ""))
    else:
        why = args.llamacpp_skipped or ("not in --parts" if args.llamacpp else "no --llamacpp")
        print(f"llama.cpp: not measured ({why})")
    for note in c.notes:
        print(f"note: {note}")
    if c.rows:
        print()
        print(c.table())
    if c.llama_rows:
        print()
        print(f"densessm against llama.cpp, {os.path.splitext(args.llama_config)[0]}: tokens/s, medians of "
              f"{args.model_rounds} alternating rounds; the bound is the read bandwidth (bench/membw.c, the best "
              f"of 1, 4 and 8 streams per thread) over the weight bytes a token reads")
        print()
        print(c.llama_table())


if __name__ == "__main__":
    main()
