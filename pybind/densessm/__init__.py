"""densessm: state-space language models (Mamba, RetNet and their DenseSSM
variants) from Python, computed by densessm's Go engine.

    import densessm
    model = densessm.default_model()
    print(model.generate("func main() {", max_new_tokens=20, seed=1))
    logits = model.logits(model.tokenizer.encode("package main"))  # float32 [T, V], no copy

Everything runs in one extension module built from Go with gopy; tensors
cross into NumPy through the Arrow C Data Interface without a copy. Errors
from Go raise densessm.Error (a RuntimeError) with the Go message. Long
calls release the GIL and stop on Ctrl-C.
"""

from ._bridge import Error, go as _go
from .commands import evaluate, run, train
from .model import Model, PrefixCache, State, architectures, backends, default_model, init, load
from .tokenizer import Tokenizer

__all__ = ["Error", "Model", "PrefixCache", "State", "Tokenizer", "architectures", "backends", "default_model",
           "evaluate", "init", "load", "run", "train", "version"]


def version() -> str:
    """What `densessm version` prints: densessm's version and the Go that built it."""
    return _go.Version()


__version__ = "0.1.0"
