"""The prefix-state cache from Python (Model.prefix_cache, generate's
cache=): a prompt seen before runs one token and decodes the same text;
caches of the same model share a directory; caches of other models, and
bad options, raise densessm.Error."""

from __future__ import annotations

import pytest

import densessm

PROMPT = "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello, world\")\n"


def greedy(n: int = 12) -> dict:
    return {"temperature": 0, "max_new_tokens": n, "ignore_eos": True}


def test_cache_hit_runs_one_token():
    m = densessm.default_model(threads=1)
    n = len(m.tokenizer.encode(PROMPT))
    want = m.generate(PROMPT, **greedy())
    c = m.prefix_cache(every=8)
    assert c.stats() == {"prompts": 0, "hits": 0, "tokens_reused": 0, "tokens_run": 0, "saved": 0}
    assert m.generate(PROMPT, cache=c, **greedy()) == want
    st = c.stats()
    assert st["prompts"] == 1 and st["hits"] == 0 and st["tokens_run"] == n
    assert st["saved"] == (n - 1) // 8 + ((n - 1) % 8 != 0)  # every 8 tokens, and after all but the last
    # The same prompt again: a hit that runs one token, the same text.
    assert m.generate(PROMPT, cache=c, **greedy()) == want
    st2 = c.stats()
    assert st2["prompts"] == 2 and st2["hits"] == 1
    assert st2["tokens_run"] - st["tokens_run"] == 1 and st2["tokens_reused"] == n - 1
    # A prompt that goes on from it starts at its longest multiple of 8.
    longer = PROMPT + "\tfmt.Println(\"bye\")\n"
    m2 = len(m.tokenizer.encode(longer))
    assert m.generate(longer, cache=c, **greedy()) == m.generate(longer, **greedy())
    st3 = c.stats()
    assert st3["hits"] == 2 and st3["tokens_reused"] - st2["tokens_reused"] == (n - 1) // 8 * 8
    assert st3["tokens_run"] - st2["tokens_run"] == m2 - (n - 1) // 8 * 8
    # stream and sampling with a seed go through the cache alike.
    assert "".join(m.stream(PROMPT, cache=c, seed=5, max_new_tokens=10)) == m.generate(PROMPT, seed=5,
                                                                                        max_new_tokens=10)
    assert c.stats()["hits"] == 3
    assert "every=8" in repr(c)


def test_cache_dir_shared_by_models(tmp_path):
    # Two models loaded from the same directory, each with a cache on the
    # same state directory: the second finds the first one's states on
    # disk; the files are state files load_state reads. A model with other
    # weights (q8) does not take them.
    d = tmp_path / "model"
    densessm.default_model().save(d)
    states = tmp_path / "states"
    a, b = densessm.load(d, threads=1), densessm.load(d, threads=1)
    want = a.generate(PROMPT, **greedy())
    ca = a.prefix_cache(every=16, dir=states)
    assert ca.dir == str(states)
    assert a.generate(PROMPT, cache=ca, **greedy()) == want
    files = sorted(states.glob("*.state.safetensors"))
    assert len(files) == ca.stats()["saved"] > 0
    lens = sorted(len(b.load_state(f)) for f in files)
    assert lens[-1] == len(a.tokenizer.encode(PROMPT)) - 1 and lens[0] == 16
    cb = b.prefix_cache(every=16, dir=states)
    assert b.generate(PROMPT, cache=cb, **greedy()) == want
    st = cb.stats()
    assert st["hits"] == 1 and st["tokens_run"] == 1 and st["saved"] == 0
    # Only on disk (memory_bytes=0) works as well.
    cd = b.prefix_cache(every=16, memory_bytes=0, dir=str(states))
    assert b.generate(PROMPT, cache=cd, **greedy()) == want and cd.stats()["tokens_run"] == 1
    q8 = densessm.load(d, threads=1, weights="q8")
    cq = q8.prefix_cache(every=16, dir=states)
    q8.generate(PROMPT, cache=cq, **greedy(2))
    assert cq.stats()["hits"] == 0


def test_cache_refusals(tmp_path):
    m, other = densessm.default_model(threads=1), densessm.default_model(threads=1)
    c = m.prefix_cache()
    cases = [
        (lambda: m.generate("a", cache=other.prefix_cache()), "a prefix cache of another model"),
        (lambda: m.generate(["a", "b"], cache=c), "one prompt, not a batch of 2"),
        (lambda: m.generate("a", cache=c, state=m.new_state()), "a state and a prefix cache together"),
        (lambda: m.generate("a", cache={}), "want a densessm.PrefixCache"),
        (lambda: m.prefix_cache(every=0), "every=0"),
        (lambda: m.prefix_cache(every=2.5), "every=2.5"),
        (lambda: m.prefix_cache(memory_bytes=-1), "memory_bytes=-1"),
        (lambda: m.prefix_cache(disk_bytes=0), "disk_bytes=0"),
        (lambda: m.prefix_cache(dir=""), "dir=''"),
    ]
    for f, msg in cases:
        with pytest.raises(densessm.Error, match=msg):
            f()
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(densessm.Error):
        m.prefix_cache(dir=tmp_path / "file" / "states")
    assert c.stats()["prompts"] == 0
    c.close()
    c.close()
    with pytest.raises(densessm.Error, match="closed"):
        m.generate("a", cache=c)
    with pytest.raises(densessm.Error, match="closed"):
        c.stats()
    m.close()
    with pytest.raises(densessm.Error, match="closed"):
        m.prefix_cache()
    # A model without a tokenizer makes a cache but cannot generate.
    bare = densessm.init("mamba", {"vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 1}, seed=1)
    with pytest.raises(densessm.Error, match="tokenizer"):
        bare.generate("a", cache=bare.prefix_cache())
