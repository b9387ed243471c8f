#!/usr/bin/env python3
"""Compare encoding speed of this package with Hugging Face tokenizers.

One run does everything: it builds a text of a few MB from the Go sources
under `go env GOROOT`/src (nothing is downloaded), trains a byte-level BPE
tokenizer on it with Hugging Face tokenizers (GPT-2 style, 32k tokens), then
encodes the text line by line

  - with Hugging Face's encode_batch on 1 thread and on all cores
    (RAYON_NUM_THREADS, one process each), and
  - with this package's Encode on one goroutine and EncodeBatch on all
    cores (go test -bench BenchmarkFile),

checks that both produce the same number of tokens, and prints MB/s and the
ratios. Requires tokenizers==0.23.3 (scripts/requirements-pyref.txt). Run
from the repository root:

    make tokenizer-bench        (runs `make pyref` first)
    $PYTHON scripts/compare_tokenizer_hf.py [--mb 4] [--vocab 32000]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HF_RUN = r"""
import json, os, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
parts = text.split("\n")
lines = [p + "\n" for p in parts[:-1]] + [parts[-1]]
tok.encode_batch(lines[:2000])
best, tokens = 1e9, 0
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    out = tok.encode_batch(lines)
    best = min(best, time.perf_counter() - t0)
    tokens = sum(len(e.ids) for e in out)
print(json.dumps({"seconds": best, "tokens": tokens}))
"""


def build_text(mb):
    root = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True,
                          check=True).stdout.strip()
    chunks, size = [], 0
    for dirpath, _, files in sorted(os.walk(os.path.join(root, "src"))):
        for name in sorted(files):
            if not name.endswith(".go"):
                continue
            with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                t = f.read()
            chunks.append(t)
            size += len(t.encode("utf-8"))
            if size >= mb * 1_000_000:
                return "".join(chunks)
    return "".join(chunks)


def train(text_path, json_path, vocab):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([text_path], trainer=trainer)
    tok.save(json_path)


def run_hf(json_path, text_path, threads, repeat):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
    out = subprocess.run([sys.executable, "-c", HF_RUN, json_path, text_path, str(repeat)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def run_go(json_path, text_path, cpu, bench):
    env = dict(os.environ, TOKENIZER_BENCH_JSON=json_path, TOKENIZER_BENCH_TEXT=text_path)
    out = subprocess.run(["go", "test", "./tokenizer", "-run", "^$", "-bench",
                          "BenchmarkFile/" + bench + "$", "-benchtime", "3x", "-cpu", str(cpu)],
                         env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"([\d.]+) MB/s\s+([\d.]+) tokens", out)
    if not m:
        sys.exit("unexpected go test output:\n" + out)
    return float(m.group(1)), int(float(m.group(2)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=4, help="size of the text in MB")
    ap.add_argument("--vocab", type=int, default=32000, help="vocabulary size")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:
        text_path, json_path = os.path.join(d, "text.txt"), os.path.join(d, "tokenizer.json")
        text = build_text(args.mb)
        with open(text_path, "w", encoding="utf-8") as f:
            f.write(text)
        size = len(text.encode("utf-8"))
        t0 = time.perf_counter()
        train(text_path, json_path, args.vocab)
        print("text: %.2f MB of Go source, vocabulary %d (trained in %.1f s), %d cores"
              % (size / 1e6, args.vocab, time.perf_counter() - t0, cores))
        hf1 = run_hf(json_path, text_path, 1, 3)
        hfn = run_hf(json_path, text_path, cores, 3)
        go1, go1_tokens = run_go(json_path, text_path, 1, "Encode")
        gon, gon_tokens = run_go(json_path, text_path, cores, "EncodeBatch")
        hf1_mbs = size / hf1["seconds"] / 1e6
        hfn_mbs = size / hfn["seconds"] / 1e6
        print("%-34s %10s %12s" % ("", "MB/s", "tokens"))
        print("%-34s %10.2f %12d" % ("HF encode_batch, 1 thread", hf1_mbs, hf1["tokens"]))
        print("%-34s %10.2f %12d" % ("HF encode_batch, %d threads" % cores, hfn_mbs, hfn["tokens"]))
        print("%-34s %10.2f %12d" % ("Go Encode, 1 core", go1, go1_tokens))
        print("%-34s %10.2f %12d" % ("Go EncodeBatch, %d cores" % cores, gon, gon_tokens))
        print("single-thread ratio Go/HF: %.2fx" % (go1 / hf1_mbs))
        print("all-cores ratio Go/HF: %.2fx; Go batch scaling: %.2fx" % (gon / hfn_mbs, gon / go1))
        if not (hf1["tokens"] == hfn["tokens"] == go1_tokens == gon_tokens):
            sys.exit("token counts differ")


if __name__ == "__main__":
    main()
