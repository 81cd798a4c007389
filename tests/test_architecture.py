"""The package's shape: data flows one way through declared layers, and nothing cycles.

DESIGN.md's layers, lowest first; a package may import only from lower layers, only
through their ``__init__`` (never another package's ``_private`` module), and nothing
below the root imports the root. docs/architecture.md draws the same map.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import random
import subprocess
import sys
from pathlib import Path

import pytest

import batchlab

SRC = Path(batchlab.__file__).resolve().parent

#: Layers, lowest first. Packages in one layer do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_errors", "_version", "_checks", "_io", "_secrets", "_seeding", "_threads", "_device"),
    ("optim", "noise", "workloads", "analysis"),
    ("training",),
    ("results",),
    ("study", "cbs"),
    ("report", "integrations"),
    ("reproduce",),
    ("cli",),
    # The public face: the root re-exports, `python -m batchlab`, the old findings name.
    ("__init__", "__main__", "findings"),
)
LAYER_OF = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}

#: Optional extras: their modules raise a clear ImportError when the framework is absent.
OPTIONAL_MODULES = {
    "batchlab.integrations.lightning": "lightning",
    "batchlab.integrations.lightning_schedule": "lightning",
    "batchlab.integrations.lightning_ramp": "lightning",
    "batchlab.integrations._accumulation": "lightning",
    "batchlab.integrations.hf": "transformers",
    "batchlab.integrations.hf_ramp": "transformers",
}


def _unit(path: Path) -> str:
    """The top-level unit a source file belongs to (``study``, ``_io``, ``__init__``...)."""
    relative = path.relative_to(SRC)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported unit, imported module path inside it) of every batchlab import."""
    package = path.relative_to(SRC.parent).parts[:-1]
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _imports_in(source: str, package: tuple[str, ...]) -> list[tuple[int, str, str]]:
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            if not target or target[0] != "batchlab":
                continue
            if len(target) == 1:  # ``from .. import analysis`` names the units themselves
                for alias in node.names:
                    found.append((node.lineno, alias.name, alias.name))
            else:
                found.append((node.lineno, target[1], ".".join(target[1:])))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "batchlab" and len(parts) > 1:
                    found.append((node.lineno, parts[1], ".".join(parts[1:])))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def test_every_unit_has_a_declared_layer():
    units = {_unit(p) for p in _sources()}
    assert units - set(LAYER_OF) == set(), "declare the layer of every package/module"


def test_imports_go_only_to_lower_layers_through_public_names():
    problems = []
    for path in _sources():
        unit = _unit(path)
        for line, target, module in _imports(path):
            where = f"{path.relative_to(SRC)}:{line}"
            if target == unit:
                continue
            if target == "__version__" or target not in LAYER_OF:
                problems.append(f"{where} imports {module!r} from the package root")
                continue
            if LAYER_OF[target] >= LAYER_OF[unit]:
                problems.append(
                    f"{where}: {unit} (layer {LAYER_OF[unit]}) imports {target} "
                    f"(layer {LAYER_OF[target]})"
                )
            if any(part.startswith("_") for part in module.split(".")[1:]):
                problems.append(f"{where} imports the private module {module!r}")
    assert problems == []


def test_the_import_reader_resolves_relative_imports():
    # The layer check cannot pass vacuously: upward, private and root imports are seen.
    source = (
        "from ..study import Study\n"
        "from ..noise._plumbing import split_batch\n"
        "from .. import __version__\n"
        "def f():\n"
        "    from ._factory import build_optimizer\n"
    )
    found = _imports_in(source, ("batchlab", "optim"))
    assert found == [
        (1, "study", "study"),
        (2, "noise", "noise._plumbing"),
        (3, "__version__", "__version__"),
        (5, "optim", "optim._factory"),
    ]
    assert LAYER_OF["study"] > LAYER_OF["optim"]


def _all_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(batchlab.__path__, "batchlab.")
        if not info.name.endswith("__main__")
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_module_imports_alone_in_any_order(seed):
    """A fresh interpreter imports every module in a shuffled order: no cycle bites."""
    modules = _all_modules()
    random.Random(seed).shuffle(modules)
    script = (
        "import importlib, sys\n"
        f"optional = {OPTIONAL_MODULES!r}\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as error:\n"
        "        if name in optional and optional[name] in str(error):\n"
        "            continue\n"
        "        print(name, repr(error)); sys.exit(1)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
