"""charrnn: character-level RNN / GRU / LSTM language models.

From Python (docs/python-api.md):
    >>> import charrnn
    >>> run = charrnn.train("configs/ihello.yaml", train__max_steps=300)
    >>> m = charrnn.load("runs/ihello")
    >>> m.sample("h", 6, greedy=True)
    'hihello'
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

# name -> the module that defines it. Imported on first use (PEP 562), so that `import charrnn` stays light:
# the command line starts without torch, and nothing here imports the training loop or TensorBoard.
_EXPORTS = {
    "load": "charrnn.trained",
    "Model": "charrnn.trained",
    "State": "charrnn.trained",
    "train": "charrnn.api",
    "Config": "charrnn.config",
    "Metrics": "charrnn.evaluate",
    "Vocab": "charrnn.vocab",
    "UserError": "charrnn.errors",
}

__all__ = ["load", "train", "Model", "State", "Config", "Metrics", "Vocab", "UserError", "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_import_module(_EXPORTS[name]), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))  # the API's names before their first use too
