"""Tokenizers from Python against the committed fixtures (recorded with
Hugging Face tokenizers), tokenizers itself, and the densessm command."""

from __future__ import annotations

import json
import subprocess

import pytest

import densessm

from conftest import ROOT

TESTDATA = ROOT / "tokenizer" / "testdata"
PARITY = json.loads((TESTDATA / "parity.json").read_text())
NAMES = sorted(PARITY["cases"])


@pytest.mark.parametrize("name", NAMES)
def test_fixture_ids(name):
    tok = densessm.Tokenizer.from_file(TESTDATA / f"{name}.json")
    cases = PARITY["cases"][name]
    for c in cases:
        assert tok.encode(c["text"]) == c["ids"], c["text"]
        assert tok.encode(c["text"], add_special_tokens=False) == c["ids_plain"], c["text"]
        assert tok.decode(c["ids"], skip_special_tokens=True) == c["decoded"], c["text"]
        assert tok.decode(c["ids"]) == c["decoded_special"], c["text"]
    if name in PARITY["batches"]:
        assert tok.encode_batch([c["text"] for c in cases]) == PARITY["batches"][name]


@pytest.mark.parametrize("name", NAMES)
def test_same_as_hugging_face(name):
    tokenizers = pytest.importorskip("tokenizers")
    path = str(TESTDATA / f"{name}.json")
    ours, hf = densessm.Tokenizer.from_file(path), tokenizers.Tokenizer.from_file(path)
    texts = [c["text"] for c in PARITY["cases"][name]] + ["func main() {\n\tfmt.Println(\"héllo, 世界\")\n}"]
    assert ours.encode_batch(texts) == [e.ids for e in hf.encode_batch(texts)]
    assert ours.encode_batch(texts, add_special_tokens=False) == [
        e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    for t in texts:
        assert ours.encode(t) == hf.encode(t).ids
    assert ours.vocab_size == hf.get_vocab_size(with_added_tokens=True)
    for word in ["the", "Ġthe", "hello", "<|endoftext|>", "▁the"]:
        assert ours.token_to_id(word) == hf.token_to_id(word), word


@pytest.mark.parametrize("name", NAMES)
def test_same_as_cli(cli, name):
    path = str(TESTDATA / f"{name}.json")
    text = "\n".join(c["text"] for c in PARITY["cases"][name])
    out = subprocess.run([cli, "tokenize", "--tokenizer", path], input=text, capture_output=True, text=True,
                         check=True).stdout
    assert densessm.Tokenizer.from_file(path).encode(text) == json.loads(out)


def test_tokenizer_api(tmp_path):
    tok = densessm.default_model().tokenizer
    ids = tok.encode("package main")
    assert tok.decode(ids) == "package main"
    assert tok.encode(["a", "package main"]) == [tok.encode("a"), ids]
    assert tok.encode_batch([]) == []
    assert tok.decode([]) == ""
    assert tok.id_to_token(ids[0]) is not None and tok.id_to_token(10**9) is None
    assert tok.token_to_id("no such token at all") is None
    assert tok.special_tokens["eos"] is not None
    tok.save(tmp_path / "t.json")
    assert densessm.Tokenizer.from_file(tmp_path / "t.json").encode("package main") == ids
    with pytest.raises(densessm.Error, match="no such file"):
        densessm.Tokenizer.from_file(tmp_path / "missing.json")
    with pytest.raises(densessm.Error):
        densessm.Tokenizer.from_str("{}")
    with pytest.raises(densessm.Error, match="encode_batch"):
        tok.encode_batch("a string")
