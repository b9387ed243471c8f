"""Sequences of different lengths from Python (packed models): logits and
prefill of ragged batches, per-sequence state lengths, and state tuning
through densessm.run."""

from __future__ import annotations

import numpy as np
import pytest

import densessm

from conftest import TINY

SEQS = [[5, 9, 31, 7, 2, 44, 13], [8, 1], np.array([3, 3, 17, 60], dtype=np.int64)]


@pytest.fixture(scope="module")
def model():
    with densessm.default_model(threads=2) as m:
        yield m


@pytest.mark.parametrize("mode", ["parallel", "chunkwise", "recurrent"])
def test_ragged_logits_default_model(model, mode):
    assert model.info["packed"] is True
    got = model.logits(SEQS, mode=mode, chunk=4)
    T = max(len(s) for s in SEQS)
    assert got.dtype == np.float32 and got.shape == (len(SEQS), T, model.vocab_size)
    for i, seq in enumerate(SEQS):
        alone = model.logits(seq, mode=mode, chunk=4)
        np.testing.assert_allclose(got[i, :len(seq)], alone, rtol=2e-5, atol=2e-5)
        assert not got[i, len(seq):].any(), f"sequence {i}: logits past its end are not zero"
    # A list of 1-D arrays of different lengths goes the same way.
    arrays = model.logits([np.asarray(s, dtype=np.int32) for s in SEQS], mode=mode, chunk=4)
    assert np.array_equal(arrays, got)


def test_equal_lengths_keep_the_batch_path(model):
    # Equal lengths as a list of lists are the ordinary [B, T] batch, bit
    # for bit the 2-D array's logits.
    batch = [[1, 2, 3], [4, 5, 6]]
    assert np.array_equal(model.logits(batch), model.logits(np.array(batch)))


def test_ragged_logits_tiny_architectures(tiny_dirs):
    # Every built-in architecture is packed; one ragged call each.
    rng = np.random.default_rng(2)
    for arch in sorted(TINY):
        m = densessm.load(tiny_dirs[arch], threads=1)
        assert m.info["packed"] is True
        seqs = [rng.integers(0, 512, size=n) for n in (9, 3, 6)]
        got = m.logits(seqs)
        for i, seq in enumerate(seqs):
            np.testing.assert_allclose(got[i, :len(seq)], m.logits(seq), rtol=2e-5, atol=2e-5, err_msg=arch)
            assert not got[i, len(seq):].any()
        m.close()


def test_ragged_prefill_lens(model, tmp_path):
    s = model.new_state(3)
    assert s.lens == [0, 0, 0] and len(s) == 0
    out = s.prefill(SEQS)
    assert out.shape == (3, 7, model.vocab_size)
    np.testing.assert_allclose(out, model.logits(SEQS), rtol=2e-5, atol=2e-5)
    assert s.lens == [7, 2, 4] and len(s) == 7
    # Each sequence continues from its own end: a step equals the logits of
    # the sequence with the token appended.
    nxt = s.step([11, 12, 13])
    assert s.lens == [8, 3, 5]
    for i, seq in enumerate(SEQS):
        whole = model.logits(list(seq) + [11 + i])
        np.testing.assert_allclose(nxt[i], whole[-1], rtol=2e-4, atol=2e-4)
    # The lengths survive a state file and a copy.
    s.save(tmp_path / "r.state")
    loaded = model.load_state(tmp_path / "r.state")
    assert loaded.lens == [8, 3, 5] and len(loaded) == 8 and s.copy().lens == [8, 3, 5]
    assert np.array_equal(loaded.step([1, 2, 3]), s.step([1, 2, 3]))


def test_ragged_errors(model):
    with pytest.raises(densessm.Error, match="sequence 1 has shape"):
        model.logits([[1, 2], []])
    with pytest.raises(densessm.Error, match="different lengths"):
        model.new_state(2).prefill([[1, 2, 3], [4]], mode="recurrent")
    with pytest.raises(densessm.Error, match="2 sequences for a state of 3"):
        model.new_state(3).prefill([[1, 2, 3], [4]])
    with pytest.raises(densessm.Error, match="outside|tokens"):
        model.logits([[1, 2, 3], [model.vocab_size]])


GO_SOURCE = '''package demo

// Sum adds the numbers of xs.
func Sum(xs []int) int {
	total := 0
	for _, x := range xs {
		total += x
	}
	return total
}

// Max returns the largest of xs, or 0.
func Max(xs []int) int {
	best := 0
	for i, x := range xs {
		if i == 0 || x > best {
			best = x
		}
	}
	return best
}
'''


def test_tune_state_smoke(model, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        (data / f"f{i}.go").write_text(GO_SOURCE.replace("Sum", f"Sum{i}").replace("Max", f"Max{i}"))
    out = tmp_path / "tuned.state"
    events = []
    densessm.run("tune-state", "--data", str(data), "--out", str(out), "--steps", "4", "--seq-len", "32",
                 "--batch-size", "2", "--threads", "1", "--eval-every", "0", "--eval-batches", "1",
                 "--val-fraction", "0.3", progress=events.append)
    assert [e["step"] for e in events if e["kind"] == "step"] == [1, 2, 3, 4]
    assert any(e["kind"] == "log" and "tuned state" in e["line"] for e in events)
    assert out.stat().st_size > 0
    s = model.load_state(out)
    assert s.batch == 1
    assert any(t.any() for t in s.snapshot().values()), "the tuned state is empty"
    ids = model.tokenizer.encode("func Sum(xs []int) int {")
    logits = s.prefill(ids)
    assert np.isfinite(logits).all() and not np.array_equal(logits, model.logits(ids))
