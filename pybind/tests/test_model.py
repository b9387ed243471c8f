"""Models from Python: the README's command, logits against the densessm
command bit for bit, zero-copy arrays, states, generation, errors."""

from __future__ import annotations

import gc
import json
import subprocess

import numpy as np
import pyarrow as pa
import pytest

import densessm

from conftest import TINY, run_python

PROMPT = "func main() {"


def test_readme_command():
    # The command README.md gives, in a fresh interpreter.
    r = run_python("import densessm; print(densessm.default_model().generate('func main() {', max_new_tokens=20, seed=1))")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip()) > 0


def test_generate_matches_cli(cli):
    m = densessm.default_model(threads=1)
    text = m.generate(PROMPT, max_new_tokens=30, seed=7)
    out = subprocess.run([cli, "generate", "--max-tokens", "30", "--seed", "7", "--threads", "1", "--json", PROMPT],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["text"] == text
    # A batch gives what one call per prompt gives, and stream the same pieces.
    prompts = [PROMPT, "package main\n\nimport (", "type T struct {"]
    batch = m.generate(prompts, max_new_tokens=25, seed=3)
    assert batch == [m.generate(p, max_new_tokens=25, seed=3) for p in prompts]
    assert "".join(m.stream(PROMPT, max_new_tokens=30, seed=7)) == text
    pieces = {}
    for i, piece in m.stream(prompts, max_new_tokens=25, seed=3):
        pieces[i] = pieces.get(i, "") + piece
    assert [pieces.get(i, "") for i in range(3)] == batch
    # Greedy decoding and a stop string.
    greedy = m.generate(PROMPT, max_new_tokens=40, temperature=0)
    assert greedy == m.generate(PROMPT, max_new_tokens=40, temperature=0, seed=99)
    cut = m.generate(PROMPT, max_new_tokens=40, temperature=0, stop="\n")
    assert "\n" not in cut and greedy.startswith(cut)


def test_stream_early_exit_stops():
    m = densessm.default_model()
    s = m.stream(PROMPT, max_new_tokens=100000, ignore_eos=True)
    assert next(s)
    s.close()  # cancels the job: the model is free again at once
    assert m.generate(PROMPT, max_new_tokens=3, seed=1)


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("mode", ["parallel", "chunkwise", "recurrent"])
def test_logits_equal_cli(cli, tiny_dirs, tmp_path, arch, mode):
    ids = np.random.default_rng(1).integers(0, TINY[arch]["vocab_size"], size=70)
    m = densessm.load(tiny_dirs[arch], threads=2)
    got = m.logits(ids, mode=mode, chunk=16)
    npy = tmp_path / "l.npy"
    subprocess.run([cli, "logits", "--model", str(tiny_dirs[arch]), "--ids", ",".join(map(str, ids)), "--mode", mode,
                    "--chunk", "16", "--threads", "2", "--out", str(npy)], check=True)
    want = np.load(npy)
    assert got.dtype == np.float32 and got.shape == want.shape == (70, TINY[arch]["vocab_size"])
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), "logits differ from `densessm logits`"


def test_default_model_logits_equal_cli(cli, tmp_path):
    m = densessm.default_model(threads=2)
    ids = m.tokenizer.encode("package main\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n")
    m.save(tmp_path / "m")
    npy = tmp_path / "l.npy"
    subprocess.run([cli, "logits", "--model", str(tmp_path / "m"), "--ids", ",".join(map(str, ids)), "--threads", "2",
                    "--out", str(npy)], check=True)
    assert np.array_equal(m.logits(ids).view(np.uint32), np.load(npy).view(np.uint32))


@pytest.mark.parametrize("weights", ["bf16", "q8"])
def test_low_precision_weights_equal_cli(cli, tmp_path, weights):
    # weights= stores the weight matrices as --weights does: the same logits
    # as `densessm logits --weights`, bit for bit, and the model says so.
    densessm.default_model().save(tmp_path / "m")
    m = densessm.load(tmp_path / "m", threads=2, weights=weights)
    assert m.info["weights"] == weights and not m.info["trainable"] and m.info["snapshots"]
    ids = m.tokenizer.encode("package main\n\nfunc main() {\n")
    npy = tmp_path / "l.npy"
    subprocess.run([cli, "logits", "--model", str(tmp_path / "m"), "--ids", ",".join(map(str, ids)), "--threads", "2",
                    "--weights", weights, "--out", str(npy)], check=True)
    assert np.array_equal(m.logits(ids).view(np.uint32), np.load(npy).view(np.uint32))
    assert densessm.default_model(threads=2, weights=weights).info["weights"] == weights
    assert densessm.default_model(threads=2).info["weights"] == "f32"
    with pytest.raises(densessm.Error, match="weights"):
        densessm.default_model(weights="q4")


def test_batch_logits(tiny_dirs):
    m = densessm.load(tiny_dirs["densemamba"], threads=2)
    ids = np.random.default_rng(2).integers(0, 512, size=(3, 20))
    got = m.logits(ids)
    assert got.shape == (3, 20, 512)
    for b in range(3):
        np.testing.assert_allclose(got[b], m.logits(ids[b]), rtol=0, atol=1e-5)


def test_logits_zero_copy_and_outlive_model(tiny_dirs):
    m = densessm.load(tiny_dirs["retnet"], threads=2)
    ids = [1, 2, 3, 4, 5]
    got = m.logits(ids)
    want = got.copy()
    # No copy: the base chain ends at the Arrow array Go exported, whose
    # buffer is the array's memory.
    assert not got.flags["OWNDATA"]
    base = got
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, pa.Array)
    assert base.buffers()[1].address == got.ctypes.data
    # The array stays valid after the model is closed and collected.
    m.close()
    del m
    gc.collect()
    junk = [np.ones(len(want.ravel()), np.float32) for _ in range(10)]  # reuse freed memory
    assert np.array_equal(got, want)
    del junk


def test_states_follow_logits(tiny_dirs):
    for arch in TINY:
        m = densessm.load(tiny_dirs[arch], threads=2)
        ids = list(range(10, 40))
        want = m.logits(ids)
        s = m.new_state()
        rows = [s.step(i) for i in ids[:10]]
        rows.append(s.prefill(ids[10:]))
        assert len(s) == 30
        got = np.concatenate([np.stack(rows[:10]), rows[10]])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=arch)
        s2 = m.new_state(batch=2)
        pair = s2.step([ids[0], ids[1]])
        assert pair.shape == (2, 512)
        np.testing.assert_allclose(pair[1], m.logits([ids[1]])[0], rtol=1e-4, atol=1e-5)
        s.close()
        with pytest.raises(densessm.Error, match="closed"):
            s.step(1)


def test_info_and_init():
    assert {"mamba", "densemamba", "retnet", "denseretnet"} <= set(densessm.architectures())
    assert "cpu" in densessm.backends()
    m = densessm.init("mamba", TINY["mamba"], seed=5)
    assert m.arch == "mamba" and m.vocab_size == 512 and m.config["hidden_size"] == 32
    assert set(m.info["modes"]) == {"parallel", "chunkwise", "recurrent"}
    same = densessm.init("mamba", TINY["mamba"], seed=5)
    assert np.array_equal(m.logits([1, 2, 3]), same.logits([1, 2, 3]))
    assert "densessm" in densessm.version()


def test_errors_carry_messages(tiny_dirs, tmp_path):
    with pytest.raises(densessm.Error, match="no such file"):
        densessm.load(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(densessm.Error, match="config.json"):
        densessm.load(tmp_path / "bad")
    m = densessm.load(tiny_dirs["mamba"])
    with pytest.raises(densessm.Error, match=r"id 512 .*512 tokens"):
        m.logits([1, 512])
    with pytest.raises(densessm.Error, match="mode"):
        m.logits([1], mode="sideways")
    with pytest.raises(densessm.Error, match="equal length"):
        m.logits([[[1, 2], [3]], [[4]]])  # ragged below the batch (a ragged batch is test_ragged.py's)
    with pytest.raises(densessm.Error, match="integers"):
        m.logits([0.5, 1.5])
    with pytest.raises(densessm.Error, match="tokenizer"):
        m.generate("x")
    with pytest.raises(densessm.Error, match="temperature"):
        densessm.default_model().generate("x", temperature=-1)
    with pytest.raises(densessm.Error, match="architecture"):
        densessm.init("no-such-arch")
    with pytest.raises(densessm.Error, match="backend"):
        densessm.default_model(backend="abacus")
    assert issubclass(densessm.Error, RuntimeError)
    m.close()
    with pytest.raises(densessm.Error, match="closed"):
        m.logits([1])
