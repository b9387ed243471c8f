"""Batch inference on Ray Data: perplexity scoring and generation, one
densessm model per worker actor.

    import ray, densessm.ray
    ds = ray.data.read_parquet("texts.parquet")
    scored = ds.map_batches(densessm.ray.PerplexityScorer, fn_constructor_kwargs={"text_column": "text"},
                            compute=ray.data.ActorPoolStrategy(size=2), batch_format="pyarrow")
    texts = ds.map_batches(densessm.ray.Generator,
                           fn_constructor_kwargs={"prompt_column": "prompt", "max_new_tokens": 64, "seed": 1},
                           compute=ray.data.ActorPoolStrategy(size=2), batch_format="pandas")

PerplexityScorer and Generator are callable classes for Dataset.map_batches:
Ray makes each actor with the constructor keywords (fn_constructor_kwargs),
which loads one model, and calls it on batches of rows. They take pyarrow
Tables, pandas DataFrames and dicts of NumPy arrays (every batch_format) and
return the batch in the same form with columns added.

Every row is computed alone, from an empty state, so a row's result does not
depend on which rows Ray puts in its batch, on how many actors there are or
on their order: it equals what score_texts and generate_texts (or
Model.generate per prompt) give in a single process, bit for bit, for the
same model and thread count. The engine guarantees the same bits for the
same inputs and thread count (docs/ARCHITECTURE.md, backends/cpu);
different thread counts gave the same bits for the default model here, but
that is not promised. Batching rows into one ragged forward, or prompts
into one generate call, would be faster for large models but agrees with
one row alone only to about 2e-5 in the logits, which can change a sampled
token, so it is not done.

This module imports ray only where it asks Ray for the actor's CPUs, so
score_texts and generate_texts, and the classes called directly, work
without ray installed.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ._bridge import Error
from .model import Model, default_model, load

__all__ = ["PerplexityScorer", "Generator", "sequence_nll", "score_texts", "generate_texts"]

# Rows of logits turned into float64 at a time by sequence_nll (bounds its
# memory at ROWS·V·8 bytes).
_ROWS = 64


def sequence_nll(model: Model, ids: Sequence[int] | np.ndarray, window: int = 512,
                 mode: str = "chunkwise") -> tuple[float, int]:
    """The summed negative log-likelihood (nats) of every token of ids but
    the first, each predicted from all the tokens before it, and the number
    of tokens predicted (len(ids) - 1; (0.0, 0) for fewer than 2 ids).

    It runs as `densessm eval ppl` (recurrent mode, the default) runs one
    document: a state of one sequence, prefilled window tokens at a time in
    the given mode ("chunkwise" as the command, "parallel" or "recurrent"),
    the last token not run; each term is -log softmax in float64 and the
    terms are summed exactly (math.fsum). It agrees with the command on a
    file of that one document to 1e-12 relative or better (the same logits
    at the same thread count; the command sums the terms in another order,
    with its own exp): see docs/distributed.md.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise Error(f"window={window!r}: want a number of tokens >= 1")
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1:
        raise Error(f"ids of shape {ids.shape}: want one sequence")
    n = len(ids)
    if n < 2:
        return 0.0, 0
    state = model.new_state(1)
    terms: list[float] = []
    try:
        done = 0
        while done < n - 1:
            # Full windows while the rest holds one (the last token
            # included, as the command feeds it), then the rest less the
            # last token, whose logits would predict nothing.
            end = done + window if n - done >= window else n - 1
            logits = state.prefill(ids[done:end], mode=mode)
            targets = ids[done + 1:min(end + 1, n)]
            for lo in range(0, len(targets), _ROWS):
                terms.extend(_row_nll(logits[lo:lo + _ROWS], targets[lo:lo + _ROWS]))
            done = end
    finally:
        state.close()
    return math.fsum(terms), n - 1


def _row_nll(logits: np.ndarray, targets: np.ndarray) -> list[float]:
    """-log softmax(logits[i])[targets[i]] per row, in float64."""
    rows = logits[:len(targets)]
    x = rows.astype(np.float64)
    x -= rows.max(axis=1).astype(np.float64)[:, None]  # the max is exact in float32
    picked = x[np.arange(len(targets)), targets]
    np.exp(x, out=x)
    return (np.log(x.sum(axis=1)) - picked).tolist()


def score_texts(model: Model, texts: Sequence[str | None], *, eos: bool = True, window: int = 512,
                mode: str = "chunkwise") -> dict[str, list]:
    """Scores each text alone: {"nll": [...], "tokens": [...],
    "perplexity": [...]}, one entry per text.

    A text is encoded with the model's tokenizer, followed by its
    end-of-text token when eos (as `densessm eval ppl` and training end
    every document; a tokenizer without one adds nothing), and scored by
    sequence_nll: nll is the sum in nats over the tokens predicted (every
    one but the first, the end-of-text token included), tokens their
    number, perplexity exp(nll / tokens). A text of fewer than 2 tokens, or
    None, gives nll 0.0, tokens 0 and perplexity NaN.
    """
    tok = model.tokenizer
    end = tok.special_tokens.get("eos") if eos else None
    out: dict[str, list] = {"nll": [], "tokens": [], "perplexity": []}
    for text in texts:
        if text is None:
            total, n = 0.0, 0
        else:
            if not isinstance(text, str):
                raise Error(f"text of type {type(text).__name__}: want str or None")
            ids = tok.encode(text) if text else []
            if end is not None:
                ids = list(ids) + [end]
            total, n = sequence_nll(model, ids, window=window, mode=mode)
        out["nll"].append(total)
        out["tokens"].append(n)
        out["perplexity"].append(math.exp(total / n) if n else math.nan)
    return out


def generate_texts(model: Model, prompts: Sequence[str | None], seeds: Sequence[int] | None = None,
                   **options: Any) -> list[str | None]:
    """model.generate(prompt, **options) for each prompt alone, with
    seeds[i] as the seed of prompt i when seeds is given (else
    options["seed"]); None for a None prompt. Each prompt's sampler is
    seeded with its seed alone, so the same prompt and seed give the same
    text wherever it runs."""
    if seeds is not None and len(seeds) != len(prompts):
        raise Error(f"{len(seeds)} seeds for {len(prompts)} prompts")
    out: list[str | None] = []
    for i, p in enumerate(prompts):
        if p is None:
            out.append(None)
            continue
        o = dict(options)
        if seeds is not None:
            o["seed"] = int(seeds[i])
        out.append(model.generate(p, **o))
    return out


def _ray_cpus() -> int:
    """The CPUs Ray reserved for this worker (map_batches' num_cpus, 1 by
    default), at least 1; 1 outside a Ray worker or without ray."""
    try:
        import ray
    except ImportError:
        return 1
    if not ray.is_initialized():
        return 1
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
    return max(1, int(cpus))


class _ModelActor:
    """Loads (or takes) the model of an actor."""

    def __init__(self, model: Model | str | os.PathLike | None, threads: int | None, backend: str,
                 weights: str | None) -> None:
        if isinstance(model, Model):
            self.model, self._own = model, False
            return
        if threads is None:
            threads = _ray_cpus()
        if model is None:
            self.model = default_model(backend, threads, weights=weights)
        else:
            self.model = load(model, backend, threads, weights=weights)
        self._own = True

    def close(self) -> None:
        """Frees the model, when this object loaded it."""
        if self._own:
            self.model.close()


class PerplexityScorer(_ModelActor):
    """For Dataset.map_batches: adds the columns nll, tokens and perplexity
    (with prefix before each name) to every batch, each row's text scored
    alone by score_texts.

    model: None for the built-in default model, a model directory (loaded
    by every actor: it must be readable where the actors run), or a Model
    (called directly, in this process; Ray cannot ship one to actors).
    threads: the model's threads (None: the CPUs Ray reserved for the actor,
    num_cpus of map_batches, 1 by default; 1 outside Ray). eos, window,
    mode: as for score_texts. backend, weights: as for densessm.load.
    """

    def __init__(self, model: Model | str | os.PathLike | None = None, text_column: str = "text", *,
                 prefix: str = "", eos: bool = True, window: int = 512, mode: str = "chunkwise",
                 threads: int | None = None, backend: str = "cpu", weights: str | None = None) -> None:
        super().__init__(model, threads, backend, weights)
        self.text_column, self.prefix = text_column, prefix
        self.eos, self.window, self.mode = eos, window, mode

    def __call__(self, batch: Any) -> Any:
        texts = _column(batch, self.text_column)
        scores = score_texts(self.model, texts, eos=self.eos, window=self.window, mode=self.mode)
        return _with_columns(batch, {
            self.prefix + "nll": pa.array(scores["nll"], pa.float64()),
            self.prefix + "tokens": pa.array(scores["tokens"], pa.int64()),
            self.prefix + "perplexity": pa.array(scores["perplexity"], pa.float64()),
        })


class Generator(_ModelActor):
    """For Dataset.map_batches: adds the column output_column (default
    "generated") to every batch: the text model.generate continues each
    row's prompt with, each prompt alone (generate_texts).

    seed: the seed of every row (the same prompt gives the same text, as
    Model.generate with that seed gives); seed_column: a column of per-row
    seeds instead. Give one of them for results that do not change from run
    to run (with neither, each row draws a random seed). The other keywords
    are Model.generate's (max_new_tokens, temperature, top_k, top_p, min_p,
    repetition_penalty, stop, eos, ignore_eos). model, threads, backend,
    weights: as for PerplexityScorer.
    """

    def __init__(self, model: Model | str | os.PathLike | None = None, prompt_column: str = "prompt", *,
                 output_column: str = "generated", seed: int | None = None, seed_column: str | None = None,
                 threads: int | None = None, backend: str = "cpu", weights: str | None = None,
                 **options: Any) -> None:
        if seed is not None and seed_column is not None:
            raise Error("give seed or seed_column, not both")
        bad = set(options) - {"max_new_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                              "stop", "eos", "ignore_eos"}
        if bad:
            raise Error(f"Generator: unknown options {sorted(bad)}")
        super().__init__(model, threads, backend, weights)
        self.prompt_column, self.output_column = prompt_column, output_column
        self.seed_column = seed_column
        self.options = dict(options, seed=seed)

    def __call__(self, batch: Any) -> Any:
        prompts = _column(batch, self.prompt_column)
        seeds = _column(batch, self.seed_column) if self.seed_column is not None else None
        texts = generate_texts(self.model, prompts, seeds, **self.options)
        return _with_columns(batch, {self.output_column: pa.array(texts, pa.string())})


def _column(batch: Any, name: str) -> list:
    """The values of column name of a batch (pyarrow Table, pandas
    DataFrame or mapping of arrays) as a Python list, None for nulls."""
    if isinstance(batch, pa.Table):
        if name not in batch.column_names:
            raise Error(f"no column {name!r} in the batch (columns {batch.column_names})")
        return batch.column(name).to_pylist()
    if isinstance(batch, Mapping):
        if name not in batch:
            raise Error(f"no column {name!r} in the batch (columns {list(batch)})")
        return [_none_if_null(v) for v in np.asarray(batch[name], dtype=object).tolist()]
    if hasattr(batch, "columns") and hasattr(batch, "__getitem__"):  # pandas.DataFrame
        if name not in batch.columns:
            raise Error(f"no column {name!r} in the batch (columns {list(batch.columns)})")
        return [_none_if_null(v) for v in batch[name].tolist()]
    raise Error(f"a batch of type {type(batch).__name__}: want a pyarrow Table, a pandas DataFrame or a dict of "
                "arrays (batch_format \"pyarrow\", \"pandas\" or \"numpy\")")


def _none_if_null(v: Any) -> Any:
    """None for pandas' and NumPy's missing values (None, NaN, pd.NA)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if type(v).__name__ == "NAType":
        return None
    return v


def _with_columns(batch: Any, cols: dict[str, pa.Array]) -> Any:
    """batch with the columns cols added (replacing those of the same name),
    in the batch's own form."""
    if isinstance(batch, pa.Table):
        for name, arr in cols.items():
            if name in batch.column_names:
                batch = batch.set_column(batch.column_names.index(name), name, arr)
            else:
                batch = batch.append_column(name, arr)
        return batch
    if isinstance(batch, Mapping):
        out = dict(batch)
        for name, arr in cols.items():
            out[name] = arr.to_numpy(zero_copy_only=False)
        return out
    out = batch.copy(deep=False)  # pandas.DataFrame
    for name, arr in cols.items():
        out[name] = arr.to_numpy(zero_copy_only=False)
    return out
