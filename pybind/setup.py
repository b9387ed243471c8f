"""Builds densessm's extension module with the Go toolchain.

pip runs this through setuptools (pyproject.toml): build_ext builds gopy and
goimports from the repository's tools module (their versions are pinned
there), runs `gopy build` on the Go package pybind/ (the directory of this
file) inside the repository's Go module, and copies the extension and
gopy's two Python modules into densessm/_gobind/. Everything it needs is
the Go toolchain on PATH (or $GO), a C compiler for cgo, and the Python
headers of the interpreter it runs under.

Build outside the repository's Go module is not possible: the extension is
this module's code. `pip install ./pybind` from a checkout builds in place.
"""

import os
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class GoExtension(Extension):
    """The gopy extension: no C sources of ours; built by GoBuild."""

    def __init__(self, name):
        super().__init__(name, sources=[])


class GoBuild(build_ext):
    def build_extension(self, ext):
        if not os.path.exists(os.path.join(ROOT, "go.mod")):
            raise RuntimeError(f"{ROOT} is not densessm's Go module: build from a checkout (pip install ./pybind)")
        go = os.environ.get("GO") or shutil.which("go")
        if not go:
            raise RuntimeError("the Go toolchain (go 1.26 or newer) is not on PATH: install it or set GO")
        work = os.path.join(ROOT, "pybind", "_build")  # inside the module, ignored by ./... (leading _)
        bindir = os.path.join(work, "bin")
        out = os.path.join(work, "gobind")
        os.makedirs(bindir, exist_ok=True)
        env = dict(os.environ)
        env["PATH"] = bindir + os.pathsep + os.path.dirname(go) + os.pathsep + env.get("PATH", "")
        env.setdefault("CGO_ENABLED", "1")
        # Link the extension against libc only, not libpython: the
        # interpreter that imports it provides the Python C API, so the
        # extension also loads into a Python built without a shared
        # libpython. gopy links -l$GOPY_PYLIB when the three GOPY_ variables
        # are set.
        env["GOPY_INCLUDE"] = sysconfig.get_paths()["include"]
        env["GOPY_LIBDIR"] = sysconfig.get_config_var("LIBDIR") or sysconfig.get_paths()["stdlib"]
        env["GOPY_PYLIB"] = "c"
        self._run([go, "build", "-o", bindir + os.sep, "github.com/go-python/gopy", "golang.org/x/tools/cmd/goimports"],
                  cwd=os.path.join(ROOT, "tools"), env=env)
        shutil.rmtree(out, ignore_errors=True)
        self._run([os.path.join(bindir, "gopy"), "build", "-output=" + out, "-vm=" + sys.executable,
                   "-name=gobind", "-no-make", "-symbols=false", "./pybind"], cwd=ROOT, env=env)
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        target = self.get_ext_fullpath(ext.name)  # .../densessm/_gobind/_gobind<suffix>
        dest = os.path.dirname(target)
        os.makedirs(dest, exist_ok=True)
        shutil.copyfile(os.path.join(out, "_gobind" + suffix), target)
        for name in ("go.py", "pybind.py"):
            shutil.copyfile(os.path.join(out, name), os.path.join(dest, name))
        with open(os.path.join(dest, "__init__.py"), "w") as f:
            f.write('"""The extension module gopy generates for the Go package pybind (do not import it directly)."""\n')

    def _run(self, cmd, cwd, env):
        print("densessm build:", " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(proc.stdout, flush=True)
        # gopy prints a failed step's output but exits 0 on some failures: check for the files too.
        if proc.returncode != 0 or "cmd had error" in proc.stdout:
            raise RuntimeError(f"{' '.join(cmd)} failed (status {proc.returncode}):\n{proc.stdout}")


setup(ext_modules=[GoExtension("densessm._gobind._gobind")], cmdclass={"build_ext": GoBuild})
