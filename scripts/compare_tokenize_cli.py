#!/usr/bin/env python3
"""End-to-end speed of `densessm tokenize --count` beside tiktoken and HF tokenizers.

Each tool runs as its own process on one core (`taskset -c CPU` when taskset
exists; GOMAXPROCS=1 for densessm, RAYON_NUM_THREADS=1 and
TOKENIZERS_PARALLELISM=false for the Python tools) with the corpus file as
its stdin, and the wall time of the whole process is measured: start-up,
loading the tokenizer, reading stdin, encoding and printing the count.

  densessm   the binary built once here (go build ./cmd/densessm), run as
             `densessm tokenize --count --tokenizer tokenizer.json < corpus`:
             the whole input is one text.
  tiktoken   a tiktoken.Encoding built from the same vocabulary: every vocab
             entry but the added tokens, mapped from the byte-level alphabet
             back to bytes, with its id as its rank (mergeable_ranks, written
             to a .tiktoken file that the process loads as tiktoken's own
             loader does), the added tokens as special tokens, and the regex
             of HF's ByteLevel pre-tokenizer; encode(text, allowed_special=
             "all") on the whole text, so added tokens split as in densessm.
             tiktoken merges the pair whose concatenation has the lowest
             rank, BPE the pair with the lowest merge index; the two agree
             when merge i yields the i-th new token, as the trainers assign
             ids (the script checks that and warns where it does not hold).
  hf         tokenizers.Tokenizer.from_file, encode_batch over the text cut
             at every point that no pre-tokenizer split can cross (after a
             newline that follows a printable ASCII character and precedes
             one), so the ids equal those of one encode of the whole text.
             (HF is far slower on long texts: about 5x on 256 kB pieces.)

The corpus is Go source: the *.go files under `go env GOROOT`/src, walked
in sorted order and concatenated until the size is reached (the same text as
scripts/compare_tokenizer_hf.py builds; nothing is downloaded). Without
--tokenizer, a byte-level BPE (GPT-2 style, --vocab tokens, one special
token) is trained with HF tokenizers on the first --train-mb MB of that
corpus, as scripts/compare_tokenizer_hf.py does; --tokenizer takes any
tokenizer.json with a BPE model, no normalizer and a plain ByteLevel
pre-tokenizer (add_prefix_space false, use_regex true), such as one that
`densessm tokenizer train` writes.

For each size (--sizes, MB of 10^6 bytes) it runs --rounds rounds after
--warmup unrecorded ones; every round runs each tool once, the order
rotating from round to round, and the table gives the median and the
fastest wall time, MB/s from the median, the in-process encode-only MB/s of
the Python tools, the token counts and each process's peak RSS (from GNU
/usr/bin/time, the figure `time -v` prints, or else from wait4 in a small
wrapper process: see RSS_WRAPPER). A first line gives each
tool's start-up time (the same run on an empty stdin), which the end-to-end
figures include; the load average is printed before and after, since other
processes on the machine slow every figure. The three counts must be
equal, and so must all the ids on the first size (checked once, untimed;
--no-ids skips that): the script exits 1 if they are not. Last, every tool
runs once on --rss-mb MB for its peak RSS.

Requires tiktoken==0.14.0 and tokenizers==0.23.3 (scripts/requirements-pyref.txt;
`make pyref` builds that environment). Run from anywhere, Go on PATH:

    make tokenize-bench-cli [TOKBENCH_ARGS='--sizes 4,40 --rounds 3']
    $PYTHON scripts/compare_tokenize_cli.py [--sizes 4,40] [--rss-mb 55] [--rounds 3]
        [--cpu 0] [--densessm BIN] [--tokenizer tokenizer.json] [--tools densessm,tiktoken,hf]
"""

import argparse
import base64
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no scripts/__pycache__ in the work tree
import compare_tokenizer_hf  # noqa: E402  (build_text and train: the same corpus and trainer)

# HF's ByteLevel pre-tokenizer regex (use_regex true), which tiktoken gets verbatim.
BYTE_LEVEL_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

TIKTOKEN_RUN = r"""
import base64, json, sys, time
import tiktoken
ranks = {}
with open(sys.argv[1], "rb") as f:
    for line in f:
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
with open(sys.argv[2], encoding="utf-8") as f:
    meta = json.load(f)
enc = tiktoken.Encoding(name="densessm-cli-bench", pat_str=meta["pattern"],
                        mergeable_ranks=ranks, special_tokens=meta["special"])
text = sys.stdin.buffer.read().decode("utf-8")
t0 = time.perf_counter()
ids = enc.encode(text, allowed_special="all")
dt = time.perf_counter() - t0
print(json.dumps(ids if sys.argv[-1] == "ids" else {"tokens": len(ids), "encode_s": dt}))
"""

HF_RUN = r"""
import json, re, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
text = sys.stdin.buffer.read().decode("utf-8")
t0 = time.perf_counter()
pieces = re.split(r"(?<=[!-~]\n)(?=[!-~])", text)
ids = [i for e in tok.encode_batch(pieces) for i in e.ids]
dt = time.perf_counter() - t0
print(json.dumps(ids if sys.argv[-1] == "ids" else {"tokens": len(ids), "encode_s": dt}))
"""


def bytes_to_unicode():
    """GPT-2's map from the 256 bytes to the printable characters of the byte-level alphabet."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def to_tiktoken(json_path, ranks_path, meta_path):
    """Write tiktoken's mergeable_ranks (.tiktoken format) and the special tokens and pattern.

    Returns a list of warnings about differences tiktoken's rank-order merging
    could make (none for a vocabulary whose merge results have increasing ids)."""
    with open(json_path, encoding="utf-8") as f:
        spec = json.load(f)
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or spec.get("normalizer") is not None:
        sys.exit("%s: need a BPE model and no normalizer for the tiktoken comparison" % json_path)
    if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or not pre.get("use_regex", True):
        sys.exit("%s: need a ByteLevel pre-tokenizer with add_prefix_space false and use_regex true, got %r"
                 % (json_path, pre))
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    special = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    special_ids = set(special.values())
    ranks = {}
    for token, idx in model["vocab"].items():
        if idx in special_ids:
            continue
        try:
            ranks[bytes(byte_of[c] for c in token)] = idx
        except KeyError:
            sys.exit("%s: vocab entry %r is not in the byte-level alphabet" % (json_path, token))
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        sys.exit("%s: the vocabulary lacks %d single bytes (first %d)" % (json_path, len(missing), missing[0]))
    warnings, last = [], -1
    for i, m in enumerate(model.get("merges", [])):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        merged = model["vocab"].get(a + b)
        if merged is None or merged <= last:
            warnings.append("merge %d (%r + %r) does not give the next-ranked token, so tiktoken's "
                            "rank-order merging may differ from BPE merges here" % (i, a, b))
            if len(warnings) >= 3:
                break
        else:
            last = merged
    with open(ranks_path, "wb") as f:
        for tok, idx in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(tok) + b" " + str(idx).encode() + b"\n")
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump({"pattern": BYTE_LEVEL_PATTERN, "special": special}, f)
    return warnings


# Peak RSS: a child's ru_maxrss (wait4, getrusage(RUSAGE_CHILDREN)) starts
# from the RSS of the process that forked it, so measured from here it would
# be at least this script's own RSS (hundreds of MB with the corpora in
# memory). The measured process is therefore started by a small process:
# GNU time (/usr/bin/time -f %M, as `time -v` reports it) when it exists,
# else RSS_WRAPPER, a fresh Python that reports wait4's figure for its child.
RSS_WRAPPER = r"""
import json, os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    json.dump({"wall": wall, "maxrss_kb": usage.ru_maxrss}, f)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def gnu_time():
    """The path of GNU time if it runs here with -f and -o, else None."""
    path = shutil.which("time", path="/usr/bin:/bin")
    if path is None:
        return None
    r = subprocess.run([path, "-f", "%M", "-o", os.devnull, "true"], capture_output=True)
    return path if r.returncode == 0 else None


GNU_TIME = gnu_time()


def timed_run(argv, stdin_path, env):
    """Run argv with stdin_path as its stdin: (wall seconds, stdout, peak RSS in MB)."""
    with open(stdin_path, "rb") as stdin, tempfile.TemporaryFile() as errf, \
            tempfile.NamedTemporaryFile("r", suffix=".rss") as rssf:
        if GNU_TIME:
            cmd = [GNU_TIME, "-f", "%M", "-o", rssf.name] + argv
        else:
            cmd = [sys.executable, "-c", RSS_WRAPPER, rssf.name] + argv
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=errf, env=env)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            errf.seek(0)
            sys.exit("%s failed (exit %d):\n%s" % (" ".join(a if len(a) < 60 else "'...'" for a in argv),
                                                   r.returncode, errf.read().decode(errors="replace")))
        report = rssf.read()
    if GNU_TIME:
        rss_kb = int(report.split()[-1])
    else:
        rep = json.loads(report)
        wall, rss_kb = rep["wall"], rep["maxrss_kb"]  # without the wrapper's own start-up
    return wall, r.stdout.decode(), rss_kb / 1024  # both report KiB on Linux


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


class Tool:
    def __init__(self, name, argv, env):
        self.name, self.argv, self.env = name, argv, env

    def run(self, text_path):
        """(wall seconds, tokens, encode-only seconds or None, peak RSS MB)."""
        wall, out, rss = timed_run(self.argv, text_path, self.env)
        if self.name == "densessm":
            return wall, int(out.strip()), None, rss
        r = json.loads(out)
        return wall, r["tokens"], r["encode_s"], rss

    def ids(self, text_path):
        """The token ids (untimed)."""
        if self.name == "densessm":
            argv = [a for a in self.argv if a != "--count"]
        else:
            argv = self.argv + ["ids"]
        return json.loads(timed_run(argv, text_path, self.env)[1])


def make_tools(names, densessm, tok_json, ranks_path, meta_path, cpu):
    pin = ["taskset", "-c", str(cpu)] if cpu >= 0 and shutil.which("taskset") else []
    base = dict(os.environ)
    py_env = dict(base, RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    table = {
        "densessm": Tool("densessm", pin + [densessm, "tokenize", "--count", "--tokenizer", tok_json],
                         dict(base, GOMAXPROCS="1")),
        "tiktoken": Tool("tiktoken", pin + [sys.executable, "-c", TIKTOKEN_RUN, ranks_path, meta_path], py_env),
        "hf": Tool("hf", pin + [sys.executable, "-c", HF_RUN, tok_json], py_env),
    }
    return [table[n] for n in names], bool(pin)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="4,40", help="corpus sizes in MB, comma-separated (default 4,40)")
    ap.add_argument("--rss-mb", type=float, default=55, help="size of the peak-RSS run in MB (0: skip)")
    ap.add_argument("--rounds", type=int, default=3, help="recorded rounds per size (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first (default 1)")
    ap.add_argument("--cpu", type=int, default=0, help="core for taskset -c (-1: do not pin)")
    ap.add_argument("--tools", default="densessm,tiktoken,hf", help="which tools, comma-separated")
    ap.add_argument("--densessm", help="a densessm binary to use instead of building one")
    ap.add_argument("--tokenizer", help="a byte-level BPE tokenizer.json instead of training one")
    ap.add_argument("--vocab", type=int, default=32000, help="vocabulary size to train (default 32000)")
    ap.add_argument("--train-mb", type=float, default=4, help="MB of the corpus to train on (default 4)")
    ap.add_argument("--no-ids", action="store_true", help="skip comparing the ids on the first size")
    args = ap.parse_args()
    sizes = [float(s) for s in args.sizes.split(",") if s]
    names = [n for n in args.tools.split(",") if n]
    for n in names:
        if n not in ("densessm", "tiktoken", "hf"):
            sys.exit("unknown tool %r" % n)
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")

    with tempfile.TemporaryDirectory(prefix="tokbench-") as d:
        densessm = args.densessm
        if densessm is None and "densessm" in names:
            densessm = os.path.join(d, "densessm")
            t0 = time.perf_counter()
            r = subprocess.run(["go", "build", "-o", densessm, "./cmd/densessm"], cwd=REPO,
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit("go build ./cmd/densessm failed (use --densessm BIN for a prebuilt binary):\n"
                         + r.stderr)
            print("built densessm in %.1f s" % (time.perf_counter() - t0))
        texts = {}
        want = sizes + ([args.rss_mb] if args.rss_mb > 0 else []) + ([args.train_mb] if args.tokenizer is None else [])
        for mb in sorted(set(want)):
            path = os.path.join(d, "corpus-%gMB.txt" % mb)
            data = compare_tokenizer_hf.build_text(mb).encode("utf-8")
            if len(data) < mb * 1e6:
                sys.exit("the Go source tree has only %.1f MB of *.go files; ask for less" % (len(data) / 1e6))
            with open(path, "wb") as f:
                f.write(data)
            texts[mb] = (path, len(data))

        tok_json = args.tokenizer
        if tok_json is None:
            tok_json = os.path.join(d, "tokenizer.json")
            t0 = time.perf_counter()
            compare_tokenizer_hf.train(texts[args.train_mb][0], tok_json, args.vocab)
            print("trained a %d-token byte-level BPE on %.2f MB with HF tokenizers in %.1f s"
                  % (args.vocab, texts[args.train_mb][1] / 1e6, time.perf_counter() - t0))
        ranks_path, meta_path = os.path.join(d, "ranks.tiktoken"), os.path.join(d, "tiktoken.json")
        for w in to_tiktoken(tok_json, ranks_path, meta_path):
            print("warning:", w)

        tools, pinned = make_tools(names, densessm, tok_json, ranks_path, meta_path, args.cpu)
        versions = []
        for mod in ("tiktoken", "tokenizers"):
            try:
                versions.append("%s %s" % (mod, __import__(mod).__version__))
            except ImportError:
                versions.append("%s missing" % mod)
        cpu_model = "?"
        try:
            with open("/proc/cpuinfo") as f:
                cpu_model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
        print("CPU: %s; %d cores online; load average %s; %s; %s; Python %s"
              % (cpu_model, os.cpu_count() or 0, loadavg(),
                 "each process pinned to core %d with taskset" % args.cpu if pinned else "not pinned",
                 ", ".join(versions), sys.version.split()[0]))

        empty = os.path.join(d, "empty.txt")
        open(empty, "wb").close()
        start = {t.name: [] for t in tools}
        for r in range(args.warmup + args.rounds):
            for t in tools:
                wall = t.run(empty)[0]
                if r >= args.warmup:
                    start[t.name].append(wall)
        print("start-up (empty stdin: process start, tokenizer load), median s: "
              + ", ".join("%s %.3f" % (n, statistics.median(w)) for n, w in start.items()))

        mismatch = False
        if len(tools) > 1 and not args.no_ids:
            path, size = texts[sizes[0]]
            got = {t.name: t.ids(path) for t in tools}
            ref_name, ref = tools[0].name, got[tools[0].name]
            for name, ids in got.items():
                if ids != ref:
                    mismatch = True
                    at = next((i for i, (a, b) in enumerate(zip(ids, ref)) if a != b), min(len(ids), len(ref)))
                    print("IDS DIFFER on %.2f MB: %s and %s, first at token %d (%d and %d tokens)"
                          % (size / 1e6, name, ref_name, at, len(ids), len(ref)))
            if not mismatch:
                print("ids on %.2f MB: %s give the same %d ids" % (size / 1e6, ", ".join(got), len(ref)))

        for mb in sizes:
            path, size = texts[mb]
            results = {t.name: [] for t in tools}
            for r in range(args.warmup + args.rounds):
                k = r % len(tools)
                for t in tools[k:] + tools[:k]:
                    res = t.run(path)
                    if r >= args.warmup:
                        results[t.name].append(res)
            print("\n%.2f MB (%d bytes) of Go source, %d rounds:" % (size / 1e6, size, args.rounds))
            print("  %-9s %9s %9s %10s %12s %12s %10s" % ("tool", "median s", "min s", "MB/s", "encode MB/s",
                                                        "tokens", "peak RSS"))
            mbs, counts = {}, {}
            for t in tools:
                rs = results[t.name]
                med = statistics.median(x[0] for x in rs)
                mbs[t.name] = size / med / 1e6
                counts[t.name] = {x[1] for x in rs}
                enc = [x[2] for x in rs if x[2] is not None]
                print("  %-9s %9.3f %9.3f %10.2f %12s %12s %7.0f MB" % (
                    t.name, med, min(x[0] for x in rs), mbs[t.name],
                    "%.2f" % (size / statistics.median(enc) / 1e6) if enc else "-",
                    ",".join(str(c) for c in sorted(counts[t.name])), max(x[3] for x in rs)))
            for other in ("tiktoken", "hf"):
                if "densessm" in mbs and other in mbs:
                    print("  densessm/%s MB/s ratio: %.2fx" % (other, mbs["densessm"] / mbs[other]))
            distinct = set().union(*counts.values())
            if len(distinct) != 1:
                mismatch = True
                print("  TOKEN COUNTS DIFFER: %s" % {n: sorted(c) for n, c in counts.items()})

        if args.rss_mb > 0:
            path, size = texts[args.rss_mb]
            print("\npeak RSS, one run each on %.2f MB (%d bytes):" % (size / 1e6, size))
            for t in tools:
                wall, n, _, rss = t.run(path)
                print("  %-9s %7.0f MB   (%.2f s, %.2f MB/s, %d tokens)" % (t.name, rss, wall, size / wall / 1e6, n))
        print("\nload average at the end: %s" % loadavg())
        if mismatch:
            sys.exit("token counts differ between the tools (see above)")


if __name__ == "__main__":
    main()
