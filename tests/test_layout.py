"""The shape of the package (docs/architecture.md): no import cycle, rooms of a readable size, and read-only
commands that never load the trainer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.cli import app

PACKAGE = Path(__file__).resolve().parent.parent / "charrnn"
MAX_FUNCTION_LINES, MAX_CLASS_LINES, MAX_MODULE_LINES = 60, 200, 500


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, source: str, known: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports anywhere in its source: at the top and inside functions."""
    package = name if known[name].name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from charrnn.data import corpus` imports the module charrnn.data.corpus; `from charrnn.data import
            # x` where x is a name imports charrnn.data (its __init__.py)
            targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return {t for t in targets if t in known and t != name}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), and the modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle_counting_imports_inside_functions():
    known = modules()
    graph = {name: imported(name, path.read_text(encoding="utf-8"), known) for name, path in known.items()}
    assert sum(map(len, graph.values())) > 100  # the walk sees the package's imports at all
    assert import_cycles(graph) == []


# The layers of docs/architecture.md, top first: a module imports only from its own layer or one below.
LAYERS = [
    ("entry points", ["charrnn.cli", "charrnn.api", "charrnn.__main__"]),
    ("training", ["charrnn.training"]),
    ("a trained run", ["charrnn.trained", "charrnn.inspection", "charrnn.export", "charrnn.novelty"]),
    ("model work", ["charrnn.sampling", "charrnn.evaluate", "charrnn.stepper", "charrnn.standalone_page"]),
    ("files", ["charrnn.data", "charrnn.run"]),
    ("foundations", ["charrnn.model", "charrnn.vocab", "charrnn.config", "charrnn.device", "charrnn.memory",
                     "charrnn.tracking", "charrnn.console", "charrnn.jupyter"]),
    ("ground", ["charrnn.errors", "charrnn.paths", "charrnn.safe_files", "charrnn"]),  # charrnn: __version__ only
]


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix that names the module (0 is the top)."""
    matches = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS and to docs/architecture.md"
    return max(matches)[1]


def test_every_import_goes_to_its_own_layer_or_below():
    known = modules()
    upward = [f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for name, path in known.items() for target in imported(name, path.read_text(encoding="utf-8"), known)
              if layer_of(target) < layer_of(name)]
    assert upward == []


def test_the_drawing_names_every_layer():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawing = page.split("```")[1]
    assert [line.split("  ")[0] for line in drawing.splitlines() if line and not line.startswith(" ")] == \
        [name for name, _ in LAYERS]


def test_the_cycle_finder_finds_a_lazy_cycle():
    # a cycle made only by an import inside a function, as autosize <-> train once was
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    known = modules()
    found = imported("charrnn.run.folder", "def f():\n    from charrnn.training import trainer\n", known)
    assert found == {"charrnn.training.trainer"}
    assert imported("charrnn.run.folder", "from ..errors import UserError\n", known) == {"charrnn.errors"}


def test_no_module_is_named_after_a_standard_library_module():
    """charrnn/inspect.py once shadowed the standard library's `inspect` for any script run inside the package."""
    names = {p.stem for p in PACKAGE.rglob("*.py")} | {p.name for p in PACKAGE.rglob("*") if p.is_dir()}
    assert sorted(names & set(sys.stdlib_module_names)) == []


def rooms_over_size() -> list[str]:
    over = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(PACKAGE.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            over.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    over.append(f"{where}:{node.lineno} {node.name}: {lines} lines")
    return over


def test_no_function_over_60_lines_class_over_200_or_module_over_500():
    assert rooms_over_size() == []


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("layout")
    corpus = folder / "corpus.txt"
    corpus.write_text("hihello\n" * 40, encoding="utf-8")
    config = folder / "tiny.yaml"
    config.write_text("name: tiny\ndata: {path: corpus.txt, val_fraction: 0.2}\n"
                      "model: {cell: gru, hidden_size: 8}\n"
                      "train: {seq_length: 8, batch_size: 2, max_steps: 4, eval_every: 2, device: cpu}\n"
                      "log: {dir: runs, tensorboard: false, sample_every: 0}\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["train", "--config", str(config), "--run-dir", str(folder / "run")])
    assert res.exit_code == 0, res.output
    return folder / "run"


def imported_by(*args: str) -> set[str]:
    """Every module `python -X importtime -m charrnn ARGS` imported, lazy ones included."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "charrnn", *args],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}


TRAINER = ("charrnn.training", "torch.utils.tensorboard")


@pytest.mark.parametrize("command", [["sample", "--length", "5"], ["eval"], ["info"], ["inspect", "--json"],
                                     ["export", "--out", "{tmp}/page.html"]])
def test_read_only_commands_never_import_the_training_loop(trained_run, command, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    names = imported_by(args[0], str(trained_run), *args[1:])
    assert "charrnn.trained" in names  # the command loaded the model, and the log was read
    assert sorted(n for n in names if n.startswith(TRAINER)) == []


def test_training_imports_the_loop_as_the_check_above_sees_it(trained_run, tmp_path):
    config = trained_run.parent / "tiny.yaml"
    names = imported_by("train", "--config", str(config), "--run-dir", str(tmp_path / "again"))
    assert {"charrnn.training.trainer", "charrnn.training.step"} <= names
