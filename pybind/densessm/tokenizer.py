"""Hugging Face tokenizer.json tokenizers, encoded byte for byte as
`tokenizers` does."""

from __future__ import annotations

import gc
import json
import os
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from . import _bridge as b
from ._bridge import Error, go

__all__ = ["Tokenizer"]


class Tokenizer:
    """A tokenizer.json tokenizer (BPE with its normalizers, pre-tokenizers,
    added tokens, post-processor and decoder). Safe to use from several
    threads."""

    def __init__(self, handle: Any) -> None:
        self._h = handle

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokenizer":
        """Reads a tokenizer.json file."""
        return cls(b.call(go.LoadTokenizer, os.fspath(path)))

    @classmethod
    def from_str(cls, data: str) -> "Tokenizer":
        """Builds a tokenizer from the contents of a tokenizer.json file."""
        return cls(b.call(go.TokenizerFromJSON, data))

    @property
    def vocab_size(self) -> int:
        """The number of token ids, added tokens included."""
        return self._h.VocabSize()

    @property
    def special_tokens(self) -> dict[str, int | None]:
        """The ids of bos, eos, pad and unk (None for those it has not)."""
        return {k: (v if v >= 0 else None) for k, v in json.loads(self._h.Special()).items()}

    def encode(self, text: str | Sequence[str], add_special_tokens: bool = True) -> list[int] | list[list[int]]:
        """The token ids of text (a list of lists for a list of texts, as
        encode_batch), as Hugging Face's encode(...).ids gives them."""
        if not isinstance(text, str):
            return self.encode_batch(text, add_special_tokens)
        out = b.CArray()
        try:
            b.call(self._h.Encode, text, bool(add_special_tokens), *out.addrs)
            return out.take().to_numpy(zero_copy_only=True).tolist()
        finally:
            out.release()

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
        """The token ids of each text, encoded in parallel in Go."""
        if isinstance(texts, str):
            raise Error("encode_batch: want a list of strings, got a string (use encode)")
        arr = texts if isinstance(texts, (pa.StringArray, pa.LargeStringArray)) else pa.array(list(texts), type=pa.string())
        inp, out = b.CArray.of(arr), b.CArray()
        try:
            b.call(self._h.EncodeBatch, *inp.addrs, bool(add_special_tokens), *out.addrs)
            lists = out.take()
        finally:
            inp.release()
            out.release()
        offsets = lists.offsets.to_numpy(zero_copy_only=True).tolist()
        values = lists.values.to_numpy(zero_copy_only=True).tolist()
        # Making a list per text sets off Python's cyclic collector every
        # 700 of them, and each of its passes walks the young lists: with it
        # on, 81,000 lines took 1.7 s here instead of 0.04 s.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return [values[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        finally:
            if enabled:
                gc.enable()

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = False) -> str:
        """The text of token ids."""
        return b.go_ids(np.asarray(ids, dtype=np.int64).reshape(-1) if len(ids) else np.zeros(0, np.int32),
                        self._h.Decode, bool(skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        """The id of a token string, or None."""
        i = self._h.TokenToID(token)
        return None if i < 0 else i

    def id_to_token(self, id: int) -> str | None:
        """The token string of an id, or None."""
        try:
            return b.call(self._h.IDToToken, int(id))
        except Error:
            return None

    def save(self, path: str | os.PathLike) -> None:
        """Writes the tokenizer.json it was built from to path."""
        b.call(self._h.Save, os.fspath(path))
