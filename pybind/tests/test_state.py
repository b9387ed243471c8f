"""State snapshots from Python: save, load_state, copy and snapshot
continue exactly as the original state; files of other models and damaged
files raise densessm.Error."""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pyarrow as pa
import pytest

import densessm

from conftest import TINY, run_python


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit."""
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def read_safetensors(path) -> tuple[dict, bytes]:
    """The JSON header and the data of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_safetensors(path, header: dict, data: bytes) -> None:
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


@pytest.mark.parametrize("arch", sorted(TINY))
def test_save_load_continues_exactly(tiny_dirs, tmp_path, arch):
    m = densessm.load(tiny_dirs[arch], threads=2)
    ids = np.random.default_rng(4).integers(0, 512, size=40)
    s = m.new_state()
    s.prefill(ids[:20])
    for t in ids[20:25]:
        s.step(int(t))
    path = tmp_path / "state.safetensors"
    s.save(path)
    loaded = m.load_state(path)
    # Another instance of the same model (loaded from the same files) takes
    # the file as well.
    twin = densessm.load(tiny_dirs[arch], threads=2).load_state(path)
    for st in (loaded, twin):
        assert len(st) == len(s) == 25 and st.batch == 1
    # All three continue with the same logits, bit for bit, by steps and by
    # a prefill.
    for t in ids[25:30]:
        want = s.step(int(t))
        assert same(loaded.step(int(t)), want) and same(twin.step(int(t)), want)
    want = s.prefill(ids[30:])
    assert same(loaded.prefill(ids[30:]), want) and same(twin.prefill(ids[30:]), want)
    assert len(loaded) == len(s) == 40
    # Saving again overwrites the file with the later state.
    s.save(path)
    assert len(m.load_state(path)) == 40


def test_batch_state_round_trip(tiny_dirs, tmp_path):
    m = densessm.load(tiny_dirs["mamba"], threads=2)
    s = m.new_state(batch=3)
    s.prefill(np.arange(30).reshape(3, 10))
    s.save(tmp_path / "s")
    loaded = m.load_state(tmp_path / "s")
    assert loaded.batch == 3 and len(loaded) == 10
    want = s.step([1, 2, 3])
    got = loaded.step([1, 2, 3])
    assert got.shape == (3, 512) and same(got, want)
    with pytest.raises(densessm.Error, match="one per sequence"):
        loaded.step(1)


def test_default_model_state_file(tmp_path):
    # The default model's state, saved from one instance and continued in
    # another, gives the same greedy next tokens.
    a, b = densessm.default_model(threads=1), densessm.default_model(threads=1)
    s = a.new_state()
    s.prefill(a.tokenizer.encode("package main\n\nfunc main() {\n"))
    s.save(tmp_path / "main.state")
    t = b.load_state(tmp_path / "main.state")
    tok = 10
    for _ in range(20):
        x, y = s.step(tok), t.step(tok)
        assert same(x, y)
        tok = int(np.argmax(x))


@pytest.mark.parametrize("arch", ["densemamba", "retnet"])
def test_copy_branches_independently(tiny_dirs, arch):
    m = densessm.load(tiny_dirs[arch], threads=2)
    s = m.new_state()
    s.prefill([5, 6, 7, 8, 9])
    branch, spare = s.copy(), s.copy()
    assert len(branch) == 5 and branch.batch == 1
    before = s.snapshot()
    # The branch goes elsewhere; the original is untouched by it.
    branch.step(100)
    branch.prefill([101, 102])
    assert len(branch) == 8 and len(s) == 5
    after = s.snapshot()
    assert all(same(before[k], after[k]) for k in before)
    assert same(s.step(42), spare.step(42))
    # The branch went on from the copy: it equals a state fed the same
    # tokens the same way.
    ref = m.new_state()
    ref.prefill([5, 6, 7, 8, 9])
    ref.step(100)
    ref.prefill([101, 102])
    assert same(branch.step(7), ref.step(7))
    assert len(spare.copy()) == 6
    # Closing the original leaves the branch working.
    s.close()
    assert branch.step(8).shape == (512,)


def test_snapshot_arrays(tiny_dirs, tmp_path):
    m = densessm.load(tiny_dirs["mamba"], threads=2)
    cfg = TINY["mamba"]
    E = cfg["hidden_size"] * cfg["expand"]
    s = m.new_state(batch=2)
    s.prefill([[1, 2, 3], [4, 5, 6]])
    snap = s.snapshot()
    assert list(snap) == ["layers.0.conv", "layers.0.ssm", "layers.1.conv", "layers.1.ssm"]
    assert snap["layers.0.ssm"].shape == (2, E, cfg["state_size"])
    assert snap["layers.0.conv"].shape[0] == 2 and snap["layers.0.conv"].shape[2] == E
    assert all(a.dtype == np.float32 for a in snap.values())
    assert np.abs(snap["layers.1.ssm"]).max() > 0
    # The arrays view the Arrow array Go exported (no copy of it).
    base = snap["layers.0.ssm"]
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, pa.Array)
    # A loaded state and a copy hold the same tensors; later steps do not
    # change a snapshot taken earlier.
    s.save(tmp_path / "s")
    for other in (m.load_state(tmp_path / "s"), s.copy()):
        o = other.snapshot()
        assert list(o) == list(snap) and all(same(o[k], snap[k]) for k in snap)
    kept = {k: v.copy() for k, v in snap.items()}
    s.step([7, 8])
    assert all(same(kept[k], snap[k]) for k in snap)
    assert not same(s.snapshot()["layers.1.ssm"], snap["layers.1.ssm"])
    r = densessm.load(tiny_dirs["retnet"]).new_state()
    r.step(3)
    assert list(r.snapshot()) == ["layers.0.retention", "layers.1.retention"]


def test_state_of_another_model_raises(tmp_path):
    cfg = {"model_type": "mamba", **TINY["mamba"]}
    m = densessm.init("mamba", cfg, seed=1)
    s = m.new_state()
    s.prefill([1, 2, 3])
    path = tmp_path / "state.safetensors"
    s.save(path)
    assert len(densessm.init("mamba", cfg, seed=1).load_state(path)) == 3  # the same model again
    others = [
        (densessm.init("mamba", cfg, seed=2), "mamba model with other weights"),
        (densessm.init("mamba", {**cfg, "hidden_size": 48}, seed=1), "mamba model of another configuration"),
        (densessm.init("retnet", {"model_type": "retnet", **TINY["retnet"]}, seed=1),
         "state of a mamba model, not of this retnet model"),
    ]
    for other, msg in others:
        with pytest.raises(densessm.Error, match=msg) as e:
            other.load_state(path)
        assert str(path) in str(e.value)
    # 8-bit weights are other weights: their states differ.
    d = densessm.default_model()
    st = d.new_state()
    st.step(1)
    st.save(tmp_path / "d")
    with pytest.raises(densessm.Error, match="other weights"):
        densessm.default_model(weights="q8").load_state(tmp_path / "d")


def test_damaged_state_files_raise(tiny_dirs, tmp_path):
    m = densessm.load(tiny_dirs["mamba"], threads=2)
    s = m.new_state()
    s.prefill([1, 2, 3, 4])
    good = tmp_path / "good"
    s.save(good)
    header, data = read_safetensors(good)
    md = header["__metadata__"]
    assert md["densessm.state"] == "1" and md["densessm.state.tokens"] == "4"

    def variant(name: str, edit) -> object:
        h = json.loads(json.dumps(header))
        edit(h)
        p = tmp_path / name
        write_safetensors(p, h, data)
        return p

    def set_md(key, value):
        return lambda h: h["__metadata__"].__setitem__(key, value)

    def first_tensor(h):
        return h[json.loads(h["__metadata__"]["densessm.state.tensors"])[0]]

    def reshape(h):
        t = first_tensor(h)
        t["shape"] = [t["shape"][0], t["shape"][2], t["shape"][1]]  # the same size, transposed

    def retype(h):
        first_tensor(h)["dtype"] = "I32"

    cases = {
        "missing": (tmp_path / "nope", "no such file"),
        "empty": (tmp_path / "empty", None),
        "garbage": (tmp_path / "garbage", None),
        "truncated": (tmp_path / "truncated", None),
        "huge header": (tmp_path / "huge", None),
        "model weights": (tiny_dirs["mamba"] / "model.safetensors", "not a state file"),
        "version": (variant("v", set_md("densessm.state", "9")), "version"),
        "batch 0": (variant("b0", set_md("densessm.state.batch", "0")), "batch"),
        "batch huge": (variant("bh", set_md("densessm.state.batch", "1000000000000000")), "sequences: corrupt"),
        "batch 2": (variant("b2", set_md("densessm.state.batch", "2")), "shape"),
        "tokens": (variant("t", set_md("densessm.state.tokens", "-1")), "tokens"),
        "order": (variant("o", set_md("densessm.state.tensors", '["layers.0.conv"]')), "tensors"),
        "order json": (variant("oj", set_md("densessm.state.tensors", "[nope")), "tensors"),
        "shape": (variant("sh", reshape), "shape"),
        "dtype": (variant("dt", retype), None),
    }
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "garbage").write_bytes(b"this is not a state file, not even safetensors")
    (tmp_path / "truncated").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (tmp_path / "huge").write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    for what, (path, msg) in cases.items():
        with pytest.raises(densessm.Error, match=msg) as e:
            m.load_state(path)
        assert str(e.value), what
    # Random damage to the header: each file loads or raises Error, and the
    # model works afterwards. (Damage to the data past the header is not
    # seen: a state file has no checksum.)
    raw = good.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    rng = random.Random(1)
    loaded = 0
    for i in range(300):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(8 + n)] = rng.randrange(256)
        p = tmp_path / f"fuzz{i}"
        p.write_bytes(bytes(b))
        try:
            st = m.load_state(p)
        except densessm.Error:
            continue
        loaded += 1
        st.step(1)
    assert loaded < 300
    assert same(m.load_state(good).step(5), s.step(5))


def test_closed_state_and_model(tiny_dirs, tmp_path):
    m = densessm.load(tiny_dirs["retnet"])
    s = m.new_state()
    s.step(1)
    s.save(tmp_path / "s")
    c = s.copy()
    s.close()
    for f in (lambda: s.save(tmp_path / "t"), s.copy, s.snapshot):
        with pytest.raises(densessm.Error, match="closed"):
            f()
    assert len(c) == 1
    m.close()
    with pytest.raises(densessm.Error, match="closed"):
        m.load_state(tmp_path / "s")
    with pytest.raises(densessm.Error, match="closed"):
        c.save(tmp_path / "u")


# generate(..., state=...): generation continues a state and leaves it
# advanced.

P1, P2 = "package main\n\nfunc main() {\n", "\t// and then\n"


def greedy(n: int) -> dict:
    """generate's options for n greedy tokens that do not stop early."""
    return {"temperature": 0, "max_new_tokens": n, "ignore_eos": True}


def test_generate_continues_state_token_by_token():
    # Two generate calls on one state decode what feeding the same tokens
    # to a state by hand (prefill in the chunkwise form, as generate does
    # for prompts of up to 512 tokens, then greedy steps) decodes: prompt 1, its output, prompt 2, its
    # output, as one sequence. The state counts every token, the last
    # sampled one included.
    m = densessm.default_model(threads=1)
    tok, n = m.tokenizer, 12
    s = m.new_state()
    out1 = m.generate(P1, state=s, **greedy(n))
    ids1 = tok.encode(P1)
    assert len(s) == len(ids1) + n
    out2 = m.generate(P2, state=s, **greedy(n))
    ids2 = tok.encode(P2)
    assert len(s) == len(ids1) + len(ids2) + 2 * n
    ref = m.new_state()
    texts = []
    for ids in (ids1, ids2):
        logits = ref.prefill(ids, mode="chunkwise")[-1]
        got = []
        for _ in range(n):
            got.append(int(np.argmax(logits)))
            logits = ref.step(got[-1])
        texts.append(tok.decode(got, skip_special_tokens=True))
    assert [out1, out2] == texts
    assert len(ref) == len(s)
    # The same tokens through the same forms: the same state, bit for bit.
    want, snap = ref.snapshot(), s.snapshot()
    assert all(same(snap[k], want[k]) for k in want)
    # A list of one prompt continues it too, and returns a list.
    before = len(s)
    assert len(m.generate([P1], state=s, **greedy(3))) == 1
    assert len(s) == before + len(ids1) + 3


def test_generate_state_saved_and_copied_continues_alike(tmp_path):
    # A state after a generate (that ended at a stop string, whose tokens
    # the state holds too), saved and loaded into this model and into
    # another instance of it, or copied, continues with the same output as
    # the original, greedy or sampled with a seed.
    m, twin = densessm.default_model(threads=1), densessm.default_model(threads=1)
    s = m.new_state()
    m.generate(P1, state=s, max_new_tokens=20, seed=3, stop="\n")
    n = len(s)
    assert n > len(m.tokenizer.encode(P1))
    s.save(tmp_path / "chat.state")
    loaded, twin_loaded = m.load_state(tmp_path / "chat.state"), twin.load_state(tmp_path / "chat.state")
    branch = s.copy()
    for opts in (greedy(15), {"max_new_tokens": 15, "seed": 11, "temperature": 0.9}):
        want = m.generate(P2, state=s.copy(), **opts)
        got = [m.generate(P2, state=loaded.copy(), **opts), m.generate(P2, state=branch.copy(), **opts),
               m.generate(P2, state=branch.copy(), **opts), twin.generate(P2, state=twin_loaded.copy(), **opts)]
        assert got == [want] * 4
    assert len(loaded) == len(branch) == len(s) == n  # only copies were continued
    assert m.generate(P2, state=s, **greedy(15)) == m.generate(P2, state=loaded, **greedy(15))
    assert len(s) == len(loaded) > n
    # stream continues a state as generate does.
    a, c = s.copy(), s.copy()
    assert "".join(m.stream(P2, state=a, **greedy(10))) == m.generate(P2, state=c, **greedy(10))
    assert len(a) == len(c)


def test_generate_state_refusals(tiny_dirs):
    m, other = densessm.default_model(threads=1), densessm.default_model(threads=1)
    s = m.new_state()
    cases = [
        (lambda: m.generate(["a", "b"], state=s), "one prompt, not a batch of 2"),
        (lambda: m.generate("a", state=m.new_state(batch=2)), "a state of 2 sequences"),
        (lambda: m.generate("a", state=other.new_state()), "a state of another model"),
        (lambda: m.generate("a", state=densessm.load(tiny_dirs["mamba"]).new_state()), "a state of another model"),
        (lambda: m.generate("a", state=s, cache=m.prefix_cache()), "a state and a prefix cache together"),
        (lambda: m.generate("a", state="s.safetensors"), "want a densessm.State"),
        (lambda: list(m.stream(["a", "b"], state=s)), "one prompt"),
    ]
    for f, msg in cases:
        with pytest.raises(densessm.Error, match=msg):
            f()
    assert len(s) == 0
    s.close()
    with pytest.raises(densessm.Error, match="closed"):
        m.generate("a", state=s)


def test_generate_state_left_part_way():
    # Leaving a stream early, or Ctrl-C during generate, leaves the state
    # part way: it holds the prompt and the tokens run so far, and goes on
    # from there.
    m = densessm.default_model(threads=1)
    s = m.new_state()
    it = m.stream(P1, state=s, max_new_tokens=1000, ignore_eos=True, seed=1)
    for _, _ in zip(range(5), it):
        pass
    it.close()
    n = len(s)
    assert len(m.tokenizer.encode(P1)) < n < len(m.tokenizer.encode(P1)) + 1000
    m.generate(P2, state=s, max_new_tokens=3, ignore_eos=True, seed=1)
    assert len(s) == n + len(m.tokenizer.encode(P2)) + 3
    code = """
import os, signal, threading, densessm
m = densessm.default_model(threads=1)
s = m.new_state()
threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    m.generate("func", state=s, max_new_tokens=1_000_000, ignore_eos=True)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted", len(s) > 1)
n = len(s)
m.generate("x", state=s, max_new_tokens=3, ignore_eos=True, seed=1)
print("after:", len(s) - n)
"""
    r = run_python(code, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["interrupted True", "after: %d" % (len(m.tokenizer.encode("x")) + 3)], r.stdout
