"""Fixtures of the densessm Python tests: the densessm command built from
this checkout (for parity with the CLI), tiny random models of every
built-in architecture saved to disk, and a subprocess runner."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

import densessm

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Small configurations of the four built-in architectures (config.json
# fields), so that the tests run in seconds.
TINY = {
    "mamba": {"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 2, "state_size": 8, "expand": 2,
              "time_step_rank": 4},
    "densemamba": {"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 3, "state_size": 8, "expand": 2,
                   "time_step_rank": 4},
    "retnet": {"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
               "query_key_dim": 32, "value_dim": 64, "ffn_dim": 64},
    "denseretnet": {"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
                    "query_key_dim": 32, "value_dim": 64},
}


@pytest.fixture(scope="session")
def cli(tmp_path_factory) -> str:
    """The densessm command, built from this checkout."""
    exe = tmp_path_factory.mktemp("bin") / "densessm"
    subprocess.run(["go", "build", "-o", str(exe), "./cmd/densessm"], cwd=ROOT, check=True)
    return str(exe)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A directory per built-in architecture with a tiny random model."""
    out = {}
    for arch, cfg in TINY.items():
        d = tmp_path_factory.mktemp(arch)
        with densessm.init(arch, {"model_type": arch, **cfg}, seed=3) as m:
            m.save(d)
        out[arch] = d
    return out


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (for what touches process-wide
    state: signals, plugins, the RSS). The interpreter starts with SIGINT's
    default action, so that it raises KeyboardInterrupt as in a terminal
    even when the tests run as a shell's background job, which ignores
    SIGINT, an ignoring that children inherit."""
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
