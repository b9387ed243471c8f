"""Models: loading, logits, recurrent states and text generation."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping, Sequence, overload

import numpy as np

from . import _bridge as b
from ._bridge import Error, go
from .tokenizer import Tokenizer

__all__ = ["Model", "PrefixCache", "State", "load", "default_model", "init", "architectures", "backends"]


def _threads(threads: int | None) -> int:
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise Error(f"threads={threads!r}: want None (every core) or a count >= 1")
    return threads


def _weights(weights: str | None) -> str:
    if weights is None:
        return ""
    if weights not in ("f32", "bf16", "q8"):
        raise Error(f"weights={weights!r}: want None, \"f32\", \"bf16\" or \"q8\"")
    return weights


def load(path: str | os.PathLike, backend: str = "cpu", threads: int | None = None, *,
         arch: str = "", tokenizer: str | os.PathLike | None = None, weights: str | None = None) -> "Model":
    """Loads a model directory: config.json, weights (safetensors, sharded or
    not, or pytorch_model.bin) and tokenizer.json when there is one.

    backend: "cpu", or a backend a plugin serves; threads: worker threads
    (None: every core); arch: the architecture when config.json does not
    name it; tokenizer: a tokenizer.json to use instead of the directory's;
    weights: how the weight matrices are stored, "f32", "bf16" or "q8"
    (8-bit blocks, quantized at load): less memory and faster decoding, for
    inference only (None: as the file stores them, f32 for ordinary
    checkpoints; see docs/formats.md).
    """
    h = b.call(go.LoadModel, os.fspath(path), arch, os.fspath(tokenizer) if tokenizer else "", backend,
               _weights(weights), _threads(threads))
    return Model(h)


def default_model(backend: str = "cpu", threads: int | None = None, *, weights: str | None = None) -> "Model":
    """The model built into densessm: a 2.3M-parameter DenseMamba trained on
    the Go standard library's source, with its tokenizer. It writes Go.
    weights as for load."""
    return Model(b.call(go.DefaultModel, backend, _weights(weights), _threads(threads)))


def init(arch: str, config: Mapping[str, Any] | None = None, seed: int = 0, backend: str = "cpu",
         threads: int | None = None, *, weights: str | None = None) -> "Model":
    """A new model of architecture arch with random weights from seed.

    config holds config.json fields (None: the architecture's small default
    configuration). The model has no tokenizer: use logits and states, or
    save it and train it with densessm.train. weights as for load (a model
    with bf16 or q8 weights does not train).
    """
    return Model(b.call(go.InitModel, arch, json.dumps(dict(config or {})), backend, _weights(weights), int(seed),
                        _threads(threads)))


def architectures() -> list[str]:
    """The architecture names, built in and served by plugins."""
    return [e["name"] for e in json.loads(go.Architectures())]


def backends() -> list[str]:
    """The compute backends, built in and served by plugins."""
    return [e["name"] for e in json.loads(go.Backends())]


class Model:
    """A language model. Use load, default_model or init to get one.

    Calls on one model run one at a time (calls from several threads wait
    their turn); each releases the GIL while Go computes. Close it (or use
    it as a context manager) to free its memory at once; arrays it returned
    stay valid, as they own their memory.
    """

    def __init__(self, handle: Any) -> None:
        self._h = handle
        self._info: dict | None = None
        self._identified = False

    @property
    def info(self) -> dict:
        """arch, vocab_size, parameters, backend, threads, modes, trainable,
        snapshots (states can be saved, loaded and copied), packed (logits
        and prefill take sequences of different lengths), weights, config..."""
        if self._info is None:
            self._info = json.loads(b.call(self._h.Info))
        return self._info

    @property
    def arch(self) -> str:
        return self.info["arch"]

    @property
    def vocab_size(self) -> int:
        """The number of logits per token."""
        return self.info["vocab_size"]

    @property
    def config(self) -> dict:
        """The model's config.json fields."""
        return self.info["config"]

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer (Error when it has none)."""
        return Tokenizer(b.call(self._h.Tokenizer))

    def __repr__(self) -> str:
        try:
            i = self.info
            return f"<densessm.Model {i['arch']} {i['parameters']:,} parameters on {i['backend']}>"
        except Error:
            return "<densessm.Model closed>"

    def logits(self, ids: Any, mode: str = "parallel", chunk: int = 0) -> np.ndarray:
        """The float32 logits of token ids: [T, V] for a sequence, [B, T, V]
        for a batch of B sequences (a 2-D list or array).

        The sequences of a batch may have different lengths (a list of
        lists, or of 1-D arrays) when the model takes them
        (info["packed"]: the four built-in architectures): the logits are
        then [B, T, V] with T the longest, each sequence's the logits it
        has alone and zeros past its end. Other models raise Error for them.

        mode: "parallel" (the training form), "chunkwise" (blocks of chunk
        tokens; 0 is the model's default) or "recurrent"; they agree to
        about 1e-5. The array is not a copy: it views memory Go allocated
        outside its heap, freed when the last reference to it goes.
        """
        seqs = b.ragged(ids)
        if seqs is not None:
            arr, lens = b.ragged_array(seqs)
            flat = _run_ids(arr, self._h.LogitsRagged, json.dumps(lens), mode, int(chunk))
            return b.float_array(flat, (len(lens), max(lens), self.vocab_size))
        arr, shape = b.ids_array(ids)
        if len(shape) not in (1, 2) or arr.null_count or len(arr) == 0:
            raise Error(f"ids of shape {shape}: want a non-empty sequence or batch of sequences")
        batch = shape[0] if len(shape) == 2 else 1
        flat = _run_ids(arr, self._h.Logits, batch, mode, int(chunk))
        return b.float_array(flat, (*shape, self.vocab_size))

    def new_state(self, batch: int = 1) -> "State":
        """An empty recurrent state for batch sequences."""
        return State(b.call(self._h.NewState, int(batch)), self, batch)

    def load_state(self, path: str | os.PathLike) -> "State":
        """A new state holding the state file at path (written by
        State.save, or `densessm generate --save-state`): as many sequences,
        at as many tokens, as the state that was saved, and it continues
        exactly as that state would have.

        The file must come from this model: one of another architecture,
        configuration or weights raises Error saying which (a model loaded
        from the same files, or made by init with the same configuration and
        seed, is the same model; one with weights="q8" or "bf16" is not the
        float32 one). So does a file that is not a state file, or a damaged
        one. The first save or load of a model reads all its weights once
        (for their SHA-256); Ctrl-C stops that.
        """
        self._identify()
        h = b.call(self._h.LoadState, os.fspath(path))
        return State(h, self, b.call(h.Batch))

    def _identify(self) -> None:
        """Computes the identity that state files carry (the SHA-256 of the
        configuration and of the weights) once, as a job, so that Ctrl-C
        stops it; State.save and load_state then find it known."""
        if not self._identified:
            b.drive(b.call(self._h.Identify))
            self._identified = True

    def prefix_cache(self, every: int = 256, memory_bytes: int = 1 << 30, dir: str | os.PathLike | None = None,
                     disk_bytes: int = 4 << 30) -> "PrefixCache":
        """A prefix-state cache of this model, for generate(..., cache=...):
        a prompt starts from the state of the longest of its prefixes the
        cache holds, instead of running it again.

        It keeps a prompt's state after every `every` tokens of it and after
        all its tokens but the last, in memory up to memory_bytes (0: none;
        the least recently used go first) and, with dir, as state files in
        that directory (made when missing) up to disk_bytes, where other
        caches of the same model, in this process or another, find them (as
        `densessm generate --cache-dir` does). Making one reads all the
        model's weights once (for their SHA-256, which keys the states);
        Ctrl-C stops that. Make one per model and keep it.
        """
        for name, v, least in (("every", every, 1), ("memory_bytes", memory_bytes, 0), ("disk_bytes", disk_bytes, 1)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise Error(f"{name}={v!r}: want an int >= {least}")
        path = os.fspath(dir) if dir is not None else ""
        if dir is not None and not path:
            raise Error("dir='': want a directory, or None for none")
        h = b.call(self._h.NewPrefixCache, every, memory_bytes, path, disk_bytes)
        b.drive(b.call(h.Open))
        return PrefixCache(h, self, every, memory_bytes, path or None, disk_bytes)

    @overload
    def generate(self, prompt: str, **options: Any) -> str: ...

    @overload
    def generate(self, prompt: Sequence[str], **options: Any) -> list[str]: ...

    def generate(self, prompt: str | Sequence[str], max_new_tokens: int = 200, temperature: float = 0.8,
                 top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, repetition_penalty: float = 1.0,
                 seed: int | None = None, stop: Sequence[str] | str | None = None,
                 eos: Sequence[int] | None = None, ignore_eos: bool = False, state: "State | None" = None,
                 cache: "PrefixCache | None" = None) -> str | list[str]:
        """Continues a prompt (or each of a list of prompts, decoded together
        as one batch) and returns the new text, without the prompt.

        Sampling as `densessm generate` and Hugging Face transformers do it:
        repetition penalty, temperature (0: greedy), top-k, top-p, min-p, in
        that order. A sequence ends at the tokenizer's end-of-text token (or
        one of eos), at a stop string (left out), or after max_new_tokens
        tokens. seed=None draws one at random.

        state: a State of one sequence made by this model, which the prompt
        continues (it follows the tokens the state holds), and which is left
        holding the prompt and every token sampled, the last one and an
        end-of-text token included, and a stop string's tokens too: calls
        that pass the same state go on like a conversation. Interrupted
        (Ctrl-C, or a stream left early), it is left part way, holding the
        tokens run so far. cache: a PrefixCache of this model
        (prefix_cache), which the prompt starts from and adds its states to.
        Both take one prompt, not a list of several, and not each other.
        """
        prompts, single = _prompts(prompt)
        job = self._start_generate(prompts, False, max_new_tokens=max_new_tokens, temperature=temperature,
                                   top_k=top_k, top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty,
                                   seed=seed, stop=stop, eos=eos, ignore_eos=ignore_eos, state=state, cache=cache)
        texts = b.drive(job)["texts"]
        return texts[0] if single else texts

    def stream(self, prompt: str | Sequence[str], **options: Any) -> Iterator[Any]:
        """generate, yielding text as it is decoded: pieces (str) for one
        prompt, (index, piece) pairs for a list of prompts. Each piece is
        final (UTF-8 characters and stop strings are never split). Leaving
        the loop early stops the generation (and leaves a state given as
        state= part way)."""
        prompts, single = _prompts(prompt)
        job = self._start_generate(prompts, True, **options)
        for ev in b.events(job):
            if "text" in ev:
                yield ev["text"] if single else (ev["seq"], ev["text"])

    def _start_generate(self, prompts: list[str], stream: bool, state: "State | None" = None,
                        cache: "PrefixCache | None" = None, **o: Any) -> Any:
        if state is not None and not isinstance(state, State):
            raise Error(f"state={state!r}: want a densessm.State (Model.new_state, load_state, State.copy) or None")
        if cache is not None and not isinstance(cache, PrefixCache):
            raise Error(f"cache={cache!r}: want a densessm.PrefixCache (Model.prefix_cache) or None")
        opts = {k: v for k, v in o.items() if v is not None}
        if isinstance(opts.get("stop"), str):
            opts["stop"] = [opts["stop"]]
        for k in ("stop", "eos"):
            if k in opts:
                opts[k] = list(opts[k])
        return b.call(self._h.Generate, json.dumps(prompts), json.dumps(opts), stream,
                      state._h if state is not None else b.NIL, cache._h if cache is not None else b.NIL)

    def save(self, path: str | os.PathLike) -> None:
        """Writes config.json, model.safetensors (float32) and, when the
        model has one, tokenizer.json into the directory path."""
        b.call(self._h.Save, os.fspath(path))

    def close(self) -> None:
        """Frees the model's memory now (also its plugin's); later calls
        raise Error."""
        b.call(self._h.Close)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _run_ids(arr: Any, fn: Any, *args: Any) -> Any:
    """Runs the job fn(idsArray, idsSchema, *args, outArray, outSchema) with
    arr exported for Go and returns the Arrow array it exports."""
    inp, out = b.CArray.of(arr), b.CArray()
    try:
        job = b.call(fn, *inp.addrs, *args, *out.addrs)
        b.drive(job)
        return out.take()
    finally:
        inp.release()
        out.release()


def _prompts(prompt: str | Sequence[str]) -> tuple[list[str], bool]:
    if isinstance(prompt, str):
        return [prompt], True
    prompts = list(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise Error("prompt: want a string or a non-empty list of strings")
    return prompts, False


class State:
    """A recurrent state: what a model has seen of batch sequences, in
    memory that does not grow with them. Feed tokens with step (one per
    sequence) or prefill (many); len(state) is the number of tokens seen
    (lens: per sequence).
    save writes it to a file (Model.load_state reads it back), copy
    branches it, snapshot returns its tensors."""

    def __init__(self, handle: Any, model: Model, batch: int) -> None:
        self._h, self._model, self.batch = handle, model, batch

    def __len__(self) -> int:
        """The number of tokens seen per sequence: the most any sequence
        has seen, when they differ (see lens)."""
        return b.call(self._h.Len)

    @property
    def lens(self) -> list[int]:
        """The number of tokens each sequence has seen: all len(state),
        unless a prefill of sequences of different lengths (or the state
        file it was loaded from) left them at different positions."""
        return json.loads(b.call(self._h.Lens))

    def step(self, ids: int | Sequence[int]) -> np.ndarray:
        """Feeds one token per sequence and returns the next-token logits:
        [V] for an int (a state of one sequence), [B, V] for a list."""
        scalar = np.ndim(ids) == 0
        out = b.CArray()
        try:
            b.go_ids(np.atleast_1d(ids), self._h.Step, *out.addrs)
            flat = out.take()
        finally:
            out.release()
        shape = (self._model.vocab_size,) if scalar else (self.batch, self._model.vocab_size)
        return b.float_array(flat, shape)

    def prefill(self, ids: Any, mode: str = "parallel", chunk: int = 0) -> np.ndarray:
        """Feeds a run of tokens (a sequence, or [B, T] for B sequences) and
        returns their logits ([T, V] or [B, T, V]), as Model.logits does,
        continuing from and updating the state.

        For a model that takes them (info["packed"]), in the parallel form,
        the B sequences may have different lengths (a list of lists or of
        1-D arrays): each continues its own sequence from where it stands
        and leaves it at its own end (lens), never fed padding; the logits
        are [B, T, V], T the longest, zero past each sequence's end.
        """
        seqs = b.ragged(ids)
        if seqs is not None:
            arr, lens = b.ragged_array(seqs)
            flat = _run_ids(arr, self._h.PrefillRagged, json.dumps(lens), mode, int(chunk))
            return b.float_array(flat, (len(lens), max(lens), self._model.vocab_size))
        arr, shape = b.ids_array(ids)
        if len(shape) not in (1, 2) or len(arr) == 0:
            raise Error(f"ids of shape {shape}: want a non-empty sequence or batch of sequences")
        flat = _run_ids(arr, self._h.Prefill, mode, int(chunk))
        return b.float_array(flat, (*shape, self._model.vocab_size))

    def save(self, path: str | os.PathLike) -> None:
        """Writes the state to the file path (safetensors, written
        atomically): its tensors, the number of sequences and of tokens,
        and the model's architecture and the SHA-256 of its configuration
        and weights, which Model.load_state checks. Its size does not
        depend on the number of tokens: 175 KB for the default model
        (docs/state.md lists others)."""
        self._model._identify()
        b.call(self._h.Save, os.fspath(path))

    def copy(self) -> "State":
        """A new state holding what this one holds: a branch. Each then
        goes on independently; feeding both the same tokens gives the same
        logits, bit for bit."""
        return State(b.call(self._h.Copy), self._model, self.batch)

    def snapshot(self) -> dict[str, np.ndarray]:
        """The state's tensors as float32 arrays, by the names the model
        gives them (for Mamba, per layer i "layers.i.conv" [B, K-1, E] and
        "layers.i.ssm" [B, E, N]; for RetNet "layers.i.retention"
        [B, H, dk, dv]), in its order: a copy taken now, which later steps
        do not change. The arrays view one block of memory outside Go's
        heap, as logits do."""
        out = b.CArray()
        try:
            layout = json.loads(b.call(self._h.Snapshot, *out.addrs))
            flat = out.take()
        finally:
            out.release()
        data = b.float_array(flat, (len(flat),))
        tensors = {}
        for t in layout["tensors"]:
            n = int(np.prod(t["shape"], dtype=np.int64))
            tensors[t["name"]] = data[t["offset"]:t["offset"] + n].reshape(t["shape"])
        return tensors

    def close(self) -> None:
        """Frees the state now."""
        b.call(self._h.Close)


class PrefixCache:
    """A prefix-state cache of a model (Model.prefix_cache): the states of
    the prompts generate ran through it, from which a later prompt that
    begins the same way starts. A prompt seen before runs one token; one
    that shares n tokens with an earlier one runs all but the largest
    multiple of every not above n (and not above its length less one).
    Safe to share among threads; calls on its model run one at a time."""

    def __init__(self, handle: Any, model: Model, every: int, memory_bytes: int, dir: str | None,
                 disk_bytes: int) -> None:
        self._h, self._model = handle, model
        self.every, self.memory_bytes, self.dir, self.disk_bytes = every, memory_bytes, dir, disk_bytes

    def stats(self) -> dict[str, int]:
        """What the cache has done so far: prompts (run through it), hits
        (those that started from a state it held), tokens_reused (prompt
        tokens taken from its states), tokens_run (prompt tokens run through
        the model) and saved (states stored)."""
        return json.loads(b.call(self._h.Stats))

    def close(self) -> None:
        """Drops the states kept in memory now (files in dir stay); later
        calls raise Error."""
        b.call(self._h.Close)

    def __repr__(self) -> str:
        where = f", dir={self.dir!r}" if self.dir else ""
        return f"<densessm.PrefixCache every={self.every}{where}>"
