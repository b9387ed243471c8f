"""densessm.ray: perplexity scoring and generation as Ray Data map_batches
callables. The classes are first called directly (no Ray needed), against
single-process scores and `densessm eval ppl`; then examples/ray/score.py
runs on one local Ray cluster shared by this module, and must find Ray's
results equal to the single-process ones."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import densessm
import densessm.ray as dray

from conftest import ROOT, run_python

TEXTS = [
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello\")\n}\n",
    None,
    "",
    "// Sum adds the numbers.\nfunc Sum(xs []int) int {\n\ts := 0\n\tfor _, x := range xs {\n\t\ts += x\n\t}\n"
    "\treturn s\n}\n",
    "x",
]
PROMPTS = ["func main() {\n", None, "type T struct {\n", "// Sum adds.\nfunc Sum("]


@pytest.fixture(scope="module")
def model():
    with densessm.default_model(threads=1) as m:
        yield m


def load_example():
    spec = importlib.util.spec_from_file_location("densessm_ray_example", ROOT / "examples" / "ray" / "score.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_same(a, b):
    assert a == b or (math.isnan(a) and math.isnan(b)), (a, b)


def test_score_texts_match_eval_ppl(model, tmp_path):
    # Each text alone, followed by the end-of-text token, as `densessm eval
    # ppl` scores a file of one document: the same logits (same windows,
    # the chunkwise form, the same thread count), the float64 terms summed
    # in another order with another exp, so equal to far below 1e-9.
    scores = dray.score_texts(model, TEXTS)
    assert scores["tokens"][1:3] == [0, 0] and scores["nll"][1:3] == [0.0, 0.0]
    assert all(math.isnan(p) for p in scores["perplexity"][1:3])
    for i in (0, 3, 4):
        f = tmp_path / f"{i}.jsonl"
        f.write_text(json.dumps({"text": TEXTS[i]}) + "\n")
        cli = densessm.evaluate("ppl", data=f, threads=1)
        assert cli["tokens"] == scores["tokens"][i] == len(model.tokenizer.encode(TEXTS[i]))
        assert scores["nll"][i] == pytest.approx(cli["nll"] * cli["tokens"], rel=1e-12)
        assert scores["perplexity"][i] == pytest.approx(cli["perplexity"], rel=1e-12)


def test_sequence_nll_by_hand(model):
    # The parallel form in one window is the log-softmax of model.logits.
    ids = model.tokenizer.encode(TEXTS[3])
    total, n = dray.sequence_nll(model, ids, window=len(ids), mode="parallel")
    logits = model.logits(ids).astype(np.float64)[:-1]
    lse = np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)) + logits.max(axis=1)
    want = math.fsum(lse - logits[np.arange(len(ids) - 1), ids[1:]])
    assert n == len(ids) - 1 and total == pytest.approx(want, rel=1e-12)
    # Windows change the memory, not the result (beyond rounding).
    small, n2 = dray.sequence_nll(model, ids, window=7)
    assert n2 == n and small == pytest.approx(dray.sequence_nll(model, ids)[0], rel=1e-6)
    assert dray.sequence_nll(model, ids[:1]) == (0.0, 0)
    with pytest.raises(densessm.Error, match="window=0"):
        dray.sequence_nll(model, ids, window=0)


def test_scorer_batch_formats(model):
    # pyarrow, pandas (an index that is not 0..n-1) and dicts of arrays give
    # the same columns, equal to score_texts, rows scored alone whatever the
    # batch.
    pd = pytest.importorskip("pandas")
    want = dray.score_texts(model, TEXTS)
    scorer = dray.PerplexityScorer(model=model, prefix="s_")
    table = pa.table({"id": list(range(len(TEXTS))), "text": TEXTS})
    got = scorer(table)
    assert got.column_names == ["id", "text", "s_nll", "s_tokens", "s_perplexity"]
    assert got.column("s_tokens").type == pa.int64()
    for k in ("nll", "tokens", "perplexity"):
        for a, b in zip(got.column("s_" + k).to_pylist(), want[k]):
            assert_same(a, b)
    df = scorer(pd.DataFrame({"text": TEXTS}, index=[10, 11, 12, 13, 14]))
    assert list(df.index) == [10, 11, 12, 13, 14]
    for a, b in zip(df["s_nll"], want["nll"]):
        assert_same(a, b)
    d = scorer({"text": np.array(TEXTS, dtype=object)})
    assert d["s_tokens"].tolist() == want["tokens"]
    # Two rows at a time give what the whole batch gives.
    parts = [scorer(table.slice(i, 2)) for i in range(0, len(TEXTS), 2)]
    assert pa.concat_tables(parts).column("s_nll").to_pylist() == got.column("s_nll").to_pylist()
    with pytest.raises(densessm.Error, match="no column 'body'"):
        dray.PerplexityScorer(model=model, text_column="body")(table)
    with pytest.raises(densessm.Error, match="want str or None"):
        scorer(pa.table({"text": [1, 2]}))


def test_generator(model):
    gen = dray.Generator(model=model, seed=3, max_new_tokens=12)
    out = gen(pa.table({"prompt": PROMPTS}))
    want = [None if p is None else model.generate(p, seed=3, max_new_tokens=12) for p in PROMPTS]
    assert out.column("generated").to_pylist() == want
    # A batch of one row gives the same text: each prompt is decoded alone.
    assert gen(pa.table({"prompt": PROMPTS[2:3]})).column("generated").to_pylist() == want[2:3]
    # Per-row seeds from a column.
    seeded = dray.Generator(model=model, seed_column="seed", max_new_tokens=12, output_column="out")
    got = seeded(pa.table({"prompt": PROMPTS[:1] * 2, "seed": [3, 4]})).column("out").to_pylist()
    assert got == [want[0], model.generate(PROMPTS[0], seed=4, max_new_tokens=12)]
    with pytest.raises(densessm.Error, match="not both"):
        dray.Generator(model=model, seed=1, seed_column="seed")
    with pytest.raises(densessm.Error, match="unknown options"):
        dray.Generator(model=model, max_tokens=5)


def test_without_ray():
    # densessm.ray imports ray only to ask for the actor's CPUs: without
    # ray, the classes work, with one thread.
    r = run_python("import sys; sys.modules['ray'] = None\n"
                   "import densessm.ray as dr, pyarrow as pa\n"
                   "s = dr.PerplexityScorer()\n"
                   "n = s(pa.table({'text': ['func f() {}']})).column('tokens')[0].as_py()\n"
                   "print(s.model.info['threads'], n == len(s.model.tokenizer.encode('func f() {}')))\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "True"]


def test_compare_reports_differences():
    # The example's check finds a changed value, a missing row and NaN == NaN.
    ex = load_example()
    want = {"nll": [1.5, 0.0], "tokens": [3, 0], "perplexity": [math.exp(0.5), math.nan]}
    texts = ["a", "b"]
    rows = pa.table({"id": [1, 0], "nll": [0.0, 1.5], "tokens": [0, 3], "perplexity": [math.nan, math.exp(0.5)],
                     "generated": ["b", "a"]})
    assert ex.compare([0, 1], rows, want, texts) == []
    bad = ex.compare([0, 1], rows.set_column(1, "nll", pa.array([0.0, 1.5000000000000002])), want, texts)
    assert bad == ["row 0: nll 1.5000000000000002 on Ray, 1.5 in one process"]
    assert ex.compare([0, 1], rows.slice(0, 1), want, texts)[0] == "rows: 1 from Ray, 2 in the data"


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the tests below (ray.init takes seconds):
    5 CPUs, the example's default for 2 actors per stage."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=5, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_example_on_local_cluster(cluster, tmp_path, capsys):
    ex = load_example()
    rc = ex.main(["--out", str(tmp_path), "--rows", "12", "--max-bytes", "1500", "--max-new-tokens", "24"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "equal the single-process results, bit for bit" in out
    results = pq.read_table(tmp_path / "results")
    assert results.num_rows == 12
    assert {"id", "prompt", "nll", "tokens", "perplexity", "generated"} <= set(results.column_names)
    assert min(results.column("tokens").to_pylist()) > 10


def test_actor_threads_follow_num_cpus(cluster):
    # threads=None: the CPUs Ray reserved for the actor.
    @cluster.remote(num_cpus=2)
    def threads():
        return dray.PerplexityScorer().model.info["threads"]

    assert cluster.get(threads.remote()) == 2
