"""Batch inference with densessm on Ray Data: perplexity of every row of a
Parquet dataset and a generated continuation of every row's prompt, one
model per worker actor, checked against the same work done in this process.

    pip install ./pybind "ray[data]==2.60.0"    # or: make pyvenv (pybind/requirements-dev.txt)
    python examples/ray/score.py                 # a local Ray cluster of 2 CPUs, the built-in model
    python examples/ray/score.py --data texts.parquet --text-column text --model path/to/model

Without --data it writes a small Parquet file of Go source (files of the Go
standard library, or of this repository when Go is not installed) with the
columns id, path, text and prompt (the text's first `func` line) into
--out. It then runs one Ray Data pipeline, read_parquet -> repartition ->
map_batches -> map_batches -> write_parquet (out/results), with two stages
of --actors actors each, every actor holding one model:

    densessm.ray.PerplexityScorer   adds nll (summed, nats), tokens, perplexity
    densessm.ray.Generator          adds generated (the text after the prompt)

and compares every row with a single process: densessm.ray.score_texts
and Model.generate(prompt, seed=...) on one model here. The two must be
equal, bit for bit (each row is computed alone, so batching and actors do
not change it). The first --check-cli rows are also scored by
`densessm eval ppl` on that row alone (densessm.evaluate), which must agree
to 1e-9 relative (it sums the same float64 terms in another order, with its
own exp). It prints a summary and exits 1 on any mismatch. --data must have
an integer id column, by which rows are matched (Ray keeps no order).

It starts a local cluster with ray.init(num_cpus=2 * --actors + 1: each
actor takes one CPU, and the read and write tasks need one more, or the
pipeline waits for a CPU forever), unless Ray is initialized already (as
the test suite does) or --address names a cluster. CPUs are Ray's logical
resources: 5 on a 2-core machine is fine (each model runs one thread, and
the stages take turns).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

import densessm
import densessm.ray as dray

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
PACKAGES = ["strings", "bytes", "sort", "strconv", "unicode/utf8", "path", "bufio", "errors", "fmt", "io",
            "encoding/json", "text/template"]


def go_sources() -> list[pathlib.Path]:
    """Go files of the standard library (GOROOT/src), or this repository's
    when Go is not installed, in a fixed order, tests left out."""
    root = os.environ.get("GOROOT")
    if not root and shutil.which("go"):
        root = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True).stdout.strip()
    files: list[pathlib.Path] = []
    if root and os.path.isdir(os.path.join(root, "src")):
        for pkg in PACKAGES:
            files += sorted(pathlib.Path(root, "src", pkg).glob("*.go"))
    else:
        files = sorted(REPO.glob("*/*.go"))
    return [f for f in files if not f.name.endswith("_test.go")]


def prompt_of(text: str) -> str:
    """The first line of text that starts a function, or its first 40
    characters."""
    for line in text.splitlines():
        if line.startswith("func "):
            return line + "\n"
    return text[:40]


def write_dataset(path: pathlib.Path, rows: int, max_bytes: int) -> pa.Table:
    """A Parquet file of rows Go source texts (each cut to at most max_bytes
    at a line end) with their prompts."""
    ids, paths, texts, prompts = [], [], [], []
    for f in go_sources()[:rows]:
        text = f.read_text(encoding="utf-8", errors="replace")
        if len(text) > max_bytes:
            text = text[:text.rfind("\n", 0, max_bytes) + 1] or text[:max_bytes]
        ids.append(len(ids))
        paths.append(f.name)
        texts.append(text)
        prompts.append(prompt_of(text))
    table = pa.table({"id": pa.array(ids, pa.int64()), "path": paths, "text": texts, "prompt": prompts})
    pq.write_table(table, path)
    return table


def run_ray(data: str, out: pathlib.Path, args: argparse.Namespace) -> pa.Table:
    """The pipeline: read, score, generate, write; returns what it wrote
    (read back from out/results)."""
    import ray

    ds = ray.data.read_parquet(data)
    if args.blocks:
        # A small file reads as one block, which one actor would take whole:
        # split it so that every actor gets some (a large dataset of many
        # files has blocks enough).
        ds = ds.repartition(args.blocks)
    ds = ds.map_batches(dray.PerplexityScorer,
                        fn_constructor_kwargs={"model": args.model, "text_column": args.text_column},
                        compute=ray.data.ActorPoolStrategy(size=args.actors), num_cpus=1,
                        batch_size=args.batch_size, batch_format="pyarrow")
    ds = ds.map_batches(dray.Generator,
                        fn_constructor_kwargs={"model": args.model, "prompt_column": args.prompt_column,
                                               "max_new_tokens": args.max_new_tokens, "seed": args.seed},
                        compute=ray.data.ActorPoolStrategy(size=args.actors), num_cpus=1,
                        batch_size=args.batch_size, batch_format="pandas")
    ds.drop_columns([args.text_column]).write_parquet(str(out / "results"))
    return pq.read_table(out / "results")


def compare(ids: list[int], results: pa.Table, want_scores: dict[str, list], want_texts: list[str]) -> list[str]:
    """The differences between Ray's results (rows matched by id) and the
    single-process ones (in the order of ids), as lines to print; none when
    every value is equal (NaN equal to NaN)."""
    got = {r["id"]: r for r in results.to_pylist()}
    bad = []
    if sorted(got) != sorted(ids):
        bad.append(f"rows: {len(got)} from Ray, {len(ids)} in the data")
    for i, rid in enumerate(ids):
        if (r := got.get(rid)) is None:
            continue
        for k in ("nll", "tokens", "perplexity"):
            a, b = r[k], want_scores[k][i]
            if not (a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))):
                bad.append(f"row {rid}: {k} {a!r} on Ray, {b!r} in one process")
        if r["generated"] != want_texts[i]:
            bad.append(f"row {rid}: generated {r['generated']!r} on Ray, {want_texts[i]!r} in one process")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a Parquet file (or folder) with the columns id, text and prompt "
                                  "(default: write one of Go source into --out)")
    p.add_argument("--out", help="folder for the dataset and the results (default: a temporary one, removed)")
    p.add_argument("--model", help="model directory (default: the built-in model)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--prompt-column", default="prompt")
    p.add_argument("--rows", type=int, default=24, help="rows of the Go source dataset written without --data")
    p.add_argument("--max-bytes", type=int, default=2000, help="bytes per text of that dataset, at most")
    p.add_argument("--actors", type=int, default=2, help="actors (one model each) per stage")
    p.add_argument("--blocks", type=int, help="repartition the data into this many blocks first (default: "
                                                "2 per actor; 0: as read)")
    p.add_argument("--batch-size", type=int, default=4, help="rows per map_batches batch")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check-cli", type=int, default=3, help="rows also scored by `densessm eval ppl` alone")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local cluster ray.init starts (default: 2 * --actors "
                                                  "+ 1, one for the read and write tasks beside the actors)")
    p.add_argument("--address", help="a Ray cluster to connect to instead of starting one")
    args = p.parse_args(argv)
    if args.model:
        args.model = os.path.abspath(args.model)  # the actors' working directory may be another
    if args.blocks is None:
        args.blocks = 2 * args.actors

    import ray

    tmp = None
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = pathlib.Path(tmp := tempfile.mkdtemp(prefix="densessm-ray-"))
    started = False
    try:
        data = args.data
        if not data:
            data = str(out / "texts.parquet")
            write_dataset(pathlib.Path(data), args.rows, args.max_bytes)
        shutil.rmtree(out / "results", ignore_errors=True)
        table = pq.read_table(data, columns=["id", args.text_column, args.prompt_column])

        if not ray.is_initialized():
            t = time.perf_counter()
            ray.init(address=args.address, num_cpus=None if args.address else args.num_cpus or 2 * args.actors + 1,
                     include_dashboard=False)
            started = True
            print(f"ray.init: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        results = run_ray(data, out, args)
        t_ray = time.perf_counter() - t

        t = time.perf_counter()
        model = densessm.load(args.model, threads=1) if args.model else densessm.default_model(threads=1)
        texts = table.column(args.text_column).to_pylist()
        want_scores = dray.score_texts(model, texts)
        want_texts = [None if q is None else model.generate(q, max_new_tokens=args.max_new_tokens, seed=args.seed)
                      for q in table.column(args.prompt_column).to_pylist()]
        model.close()
        t_single = time.perf_counter() - t

        ids = table.column("id").to_pylist()
        bad = compare(ids, results, want_scores, want_texts)

        t, worst = time.perf_counter(), 0.0
        for i, text in enumerate(texts[:args.check_cli]):
            if want_scores["tokens"][i] == 0:
                continue
            f = out / f"row{i}.jsonl"
            f.write_text(json.dumps({"text": text}) + "\n")
            cli = densessm.evaluate("ppl", model=args.model, data=f, threads=1)
            f.unlink()
            total = cli["nll"] * cli["tokens"]
            rel = abs(total - want_scores["nll"][i]) / max(abs(total), 1e-300)
            worst = max(worst, rel)
            if cli["tokens"] != want_scores["tokens"][i] or not rel <= 1e-9:
                bad.append(f"row {ids[i]}: `densessm eval ppl` gives {cli['tokens']} tokens, nll {total!r}; "
                           f"score_texts {want_scores['tokens'][i]}, {want_scores['nll'][i]!r} (relative {rel:.2g})")
        t_cli = time.perf_counter() - t

        nll, tokens = math.fsum(want_scores["nll"]), sum(want_scores["tokens"])
        print(f"{len(ids)} rows, {tokens} tokens scored: perplexity {math.exp(nll / tokens):.4f} over all rows")
        print(f"Ray ({args.actors} actors per stage): {t_ray:.1f} s; one process: {t_single:.1f} s; "
              f"`densessm eval ppl` on {min(args.check_cli, len(ids))} rows: {t_cli:.1f} s")
        row = 0
        print(f"row {ids[row]}: perplexity {want_scores['perplexity'][row]:.4f}; "
              f"{table.column(args.prompt_column)[row].as_py()!r} -> {want_texts[row]!r}")
        if bad:
            print(f"MISMATCH: {len(bad)} differences between Ray and one process:", file=sys.stderr)
            for line in bad[:20]:
                print("  " + line, file=sys.stderr)
            return 1
        print(f"Ray's results equal the single-process results, bit for bit; `densessm eval ppl` agrees "
              f"(largest relative difference {worst:.1g})")
        return 0
    finally:
        if started:
            ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
