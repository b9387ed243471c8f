"""densessm.train and densessm.evaluate: the densessm command's train and
eval in this process, with progress events, Ctrl-C and resume."""

from __future__ import annotations

import json
import subprocess

import pytest

import densessm

from conftest import ROOT, run_python


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(40):
        (d / f"doc{i:02d}.go").write_text("".join(
            f"func f{i}_{j}(x int) int {{\n\treturn x * {(i * j) % 7}\n}}\n" for j in range(30)))
    return d


TRAIN = dict(arch="densemamba", model_config=None, vocab_size=300, seq_len=64, batch_size=4, lr=0.005, warmup=5,
             checkpoint_every=10, eval_every=10, eval_batches=2, threads=1)


def tiny_model_config(tmp_path):
    p = tmp_path / "model.json"
    p.write_text(json.dumps({"hidden_size": 32, "num_hidden_layers": 2, "state_size": 4, "expand": 2}))
    return p


def test_train_evaluate_with_progress(corpus, tmp_path, cli):
    events = []
    out = tmp_path / "run"
    summary = densessm.train(out=out, data=corpus, steps=20, **{**TRAIN, "model_config": tiny_model_config(tmp_path)},
                             progress=events.append)
    kinds = {e["kind"] for e in events}
    assert {"step", "eval", "checkpoint", "log"} <= kinds, kinds
    steps = [e["step"] for e in events if e["kind"] == "step"]
    assert steps == list(range(1, 21))
    assert summary["steps"] == 20 and summary["loss"] > 0 and summary["val_loss"] > 0
    # The model it wrote loads and generates; its metrics are those the events gave.
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    last_step = [r for r in metrics if "loss" in r][-1]
    assert last_step["loss"] == summary["loss"]
    m = densessm.load(out)
    assert isinstance(m.generate("func f", max_new_tokens=10, seed=1), str)

    # evaluate gives what `densessm eval ppl --json` prints.
    result = densessm.evaluate("ppl", model=out, data=corpus, context=64, stride=64, threads=1)
    want = json.loads(subprocess.run([cli, "eval", "ppl", "--json", "--model", str(out), "--data", str(corpus),
                                      "--context", "64", "--stride", "64", "--threads", "1"],
                                     capture_output=True, text=True, check=True).stdout)
    assert result == want
    mc = densessm.evaluate("mc", model=out, task_file=ROOT / "eval" / "testdata" / "go-syntax.jsonl", threads=1)
    assert 0 <= mc["acc"] <= 1

    # Resuming a finished run with more steps goes on from its last step.
    more = densessm.train(out=out, resume=True, steps=25, progress=events.append)
    assert more["steps"] == 25


def test_train_ctrl_c_saves_and_resumes(corpus, tmp_path):
    out = tmp_path / "run"
    code = f"""
import os, signal, densessm
def on(ev):
    if ev["kind"] == "step" and ev["step"] == 3:
        os.kill(os.getpid(), signal.SIGINT)
try:
    densessm.train(out={str(out)!r}, data={str(corpus)!r}, steps=1000, progress=on,
                   **{{**{TRAIN!r}, "model_config": {str(tiny_model_config(tmp_path))!r}}})
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
"""
    r = run_python(code, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "interrupted"
    run = json.loads((out / "train.json").read_text())
    assert run, "no run file"
    resumed = densessm.train(out=out, resume=True, steps=8)
    assert resumed["steps"] == 8


def test_command_errors(tmp_path):
    with pytest.raises(densessm.Error, match="unknown flag"):
        densessm.train(out=tmp_path / "x", no_such_flag=1)
    with pytest.raises(densessm.Error, match="task"):
        densessm.evaluate("vibes")
    assert "densessm" in densessm.run("version")
    assert densessm.commands.flags({"lr": 1e-3, "resume": True, "decay_all": False, "data": ["a", "b"], "x": None}) \
        == ["--lr", "0.001", "--resume", "--decay-all=false", "--data", "a", "--data", "b"]
