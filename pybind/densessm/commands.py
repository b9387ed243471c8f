"""The densessm command's train and eval, run in this process."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Mapping

from . import _bridge as b
from ._bridge import Error, go

__all__ = ["run", "train", "evaluate"]

Progress = Callable[[dict], None]


def run(*args: str, progress: Progress | None = None) -> str:
    """Runs a densessm command line in this process, as the densessm command
    would (run("tokenize", "--help")), and returns what it printed on
    stdout. progress gets its events (see train); without it, the lines the
    command prints for humans go to sys.stderr. Ctrl-C stops the command as
    it stops densessm; an error raises Error."""
    if not all(isinstance(a, str) for a in args):
        raise Error("run: want string arguments")
    job = b.call(go.Run, json.dumps(list(args)))
    return b.drive(job, progress or _print_log)["stdout"]


def _print_log(ev: dict) -> None:
    """The events' default handler: the lines the command prints for
    people go to sys.stderr."""
    if ev["kind"] == "log":
        print(ev["line"], file=sys.stderr, flush=True)


def flags(options: Mapping[str, Any]) -> list[str]:
    """Command-line flags of keyword arguments: lr=1e-3 is --lr 0.001,
    a True bool is --flag, False is --flag=false, a list repeats the flag,
    None leaves it out; _ in names becomes -."""
    out: list[str] = []
    for k, v in options.items():
        if v is None:
            continue
        name = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(name if v else name + "=false")
        elif isinstance(v, (list, tuple)):
            for x in v:
                out += [name, _flag_value(x)]
        else:
            out += [name, _flag_value(v)]
    return out


def _flag_value(v: Any) -> str:
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def train(config: str | os.PathLike | None = None, *, out: str | os.PathLike, resume: bool = False,
          progress: Progress | None = None, **options: Any) -> dict:
    """Trains a model as `densessm train` does, in this process.

    config: a YAML or JSON file of train's flags; options: any other flag
    of `densessm train` (data="corpus/", arch="densemamba", steps=200,
    lr=1e-3, batch_size=8, seq_len=256, ...; see `densessm train --help`).
    With resume, a stopped run in out continues. progress, if given, gets
    each event as a dict: {"kind": "step", "step", "loss", "lr", ...},
    {"kind": "eval", "step", "val_loss", ...}, {"kind": "checkpoint",
    "step", "dir"}, {"kind": "progress", "desc", "done", "total", ...},
    {"kind": "log", "line"}. Ctrl-C saves a checkpoint of the last step and
    raises KeyboardInterrupt; train(out=..., resume=True) goes on.

    Returns {"out", "steps", "loss", "val_loss"}: the run's directory, the
    last step, its training loss and the last validation loss (None when
    there was none).
    """
    args = ["train", "--out", os.fspath(out)]
    if config is not None:
        args += ["--config", os.fspath(config)]
    if resume:
        args.append("--resume")
    args += flags(options)
    summary: dict[str, Any] = {"out": os.fspath(out), "steps": None, "loss": None, "val_loss": None}

    def on_event(ev: dict) -> None:
        if ev["kind"] == "step":
            summary["steps"], summary["loss"] = ev.get("step"), ev.get("loss")
        elif ev["kind"] == "eval":
            summary["val_loss"] = ev.get("val_loss")
        (progress or _print_log)(ev)

    run(*args, progress=on_event)
    return summary


def evaluate(task: str = "ppl", *, model: str | os.PathLike | None = None, progress: Progress | None = None,
             **options: Any) -> dict:
    """Evaluates a model as `densessm eval ppl` or `densessm eval mc` does,
    in this process, and returns its result (the command's --json output).

    task: "ppl" (perplexity of a text corpus: data=..., mode="parallel",
    context=..., stride=...) or "mc" (multiple choice: task_file=... is the
    command's --task); model: a model directory (None: the default model);
    options: any other flag of the command (see `densessm eval ppl --help`).
    """
    if task not in ("ppl", "mc"):
        raise Error(f"evaluate: task {task!r}: want 'ppl' or 'mc'")
    if "task_file" in options:
        options["task"] = options.pop("task_file")
    args = ["eval", task, "--json"]
    if model is not None:
        args += ["--model", os.fspath(model)]
    args += flags(options)
    return json.loads(run(*args, progress=progress))
