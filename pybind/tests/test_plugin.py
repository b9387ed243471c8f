"""Plugin architectures and backends from Python (the example HGRN plugin
and the CPU backend served out of process)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import ROOT, run_python


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugins")
    subprocess.run(["go", "build", "-o", str(d) + "/", "./cmd/densessm-plugin-hgrn"],
                   cwd=ROOT / "plugins" / "examples" / "hgrn", check=True)
    subprocess.run(["go", "build", "-o", str(d) + "/", "./cmd/densessm-backend-cpu"], cwd=ROOT, check=True)
    return d


def test_plugin_architecture_and_backend(plugin_dir, tmp_path):
    code = """
import json, densessm, numpy as np
out = {"archs": densessm.architectures(), "backends": densessm.backends()}
m = densessm.init("hgrn", seed=1)
l = m.logits([1, 2, 3, 4])
try:  # the example plugin's model does not take sequences of different lengths
    m.logits([[1, 2, 3], [4]])
    out["ragged"] = [m.info["packed"], "no error"]
except densessm.Error as e:
    out["ragged"] = [m.info["packed"], str(e)]
s = m.new_state()
steps = np.stack([s.step(i) for i in [1, 2, 3, 4]])
out["hgrn"] = [m.info["plugin"], list(l.shape), float(np.abs(l - steps).max())]
s.save(STATE)  # the hgrn example saves its states through the plugin
t = m.load_state(STATE)
out["state"] = len(t) == 4 and bool(np.array_equal(s.step(5), t.step(5)))
local = densessm.default_model(threads=1).generate("func main() {", max_new_tokens=20, seed=4)
remote = densessm.default_model(backend="cpu-plugin", threads=1)
out["cpu-plugin"] = [remote.info["backend"], remote.generate("func main() {", max_new_tokens=20, seed=4) == local]
print(json.dumps(out))
"""
    home = tmp_path / "home"
    home.mkdir()
    code = code.replace("STATE", repr(str(tmp_path / "hgrn.state")))
    r = run_python(code, env={"DENSESSM_PLUGIN_PATH": str(plugin_dir), "HOME": str(home),
                              "XDG_CONFIG_HOME": str(home / ".config")}, timeout=180)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "hgrn" in out["archs"] and "cpu-plugin" in out["backends"]
    plugin, shape, diff = out["hgrn"]
    assert plugin and shape[0] == 4 and diff < 1e-4
    assert out["cpu-plugin"] == ["cpu-plugin", True]
    assert out["state"] is True
    packed, msg = out["ragged"]
    assert packed is False and "different lengths [3 1]" in msg and 'info["packed"] is false' in msg


def test_cuda_backend_fake_device(tmp_path):
    """backend="cuda" through the densessm-backend-cuda plugin, on its fake
    device (DENSESSM_CUDA_FAKE=1: the kernels modelled in host memory, no
    GPU): the built-in model's greedy text equals the CPU backend's."""
    d = tmp_path / "plugins"
    subprocess.run(["go", "build", "-o", str(d) + "/", "./cmd/densessm-backend-cuda"], cwd=ROOT, check=True,
                   env={**os.environ, "CGO_ENABLED": "0"})
    code = """
import json, densessm
local = densessm.default_model(threads=1).generate("func main() {", max_new_tokens=12, seed=4)
m = densessm.default_model(backend="cuda", threads=1)
print(json.dumps({"backends": densessm.backends(), "backend": m.info["backend"],
                  "same": m.generate("func main() {", max_new_tokens=12, seed=4) == local}))
"""
    home = tmp_path / "home"
    home.mkdir()
    r = run_python(code, env={"DENSESSM_PLUGIN_PATH": str(d), "DENSESSM_CUDA_FAKE": "1", "HOME": str(home),
                              "XDG_CONFIG_HOME": str(home / ".config")}, timeout=180)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "cuda" in out["backends"]
    assert out["backend"] == "cuda" and out["same"] is True
