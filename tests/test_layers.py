"""Layers import downward only, and ``import robometa`` stays light.

The table below is the picture of robometa's layers, top to bottom. A module may
import any module of a lower row, and modules of its own package; nothing else
(every import counts: module level, inside functions, under ``TYPE_CHECKING``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robometa"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("the command", ("robometa.cli",)),
    ("evaluation: loads runs, trains and measures baselines, writes reports", ("robometa.eval",)),
    ("the training loop", ("robometa.trainer",)),
    ("the gymnasium facade", ("robometa.envs",)),
    ("pictures: frames, video, viewer, replay of a learner, curve plots", ("robometa.viz",)),
    ("run settings over the algorithm and family registries", ("robometa.configs",)),
    ("learners, their registry and the learner seam", ("robometa.algos",)),
    ("sampling episodes and trials; torch policies", ("robometa.sampling", "robometa.policies")),
    ("batched simulation behind the Simulator seam", ("robometa.sim",)),
    ("the package: registers the gymnasium ids", ("robometa",)),
    ("task families, their registry and gymnasium ids", ("robometa.tasks",)),
    ("run files: directories, checkpoints, TensorBoard writer", ("robometa.runs",)),
    ("TensorBoard tag names and what step k means", ("robometa.tags",)),
    ("devices and assets", ("robometa.device", "robometa.assets")),
    ("the user-facing error", ("robometa.errors",)),
]


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = modules()


def unit(module: str) -> tuple[int, str]:
    """``(row, package)`` of a module: the longest entry of the table it falls under
    (the root ``robometa`` entry holds only the package's ``__init__``)."""
    best = None
    for row, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            inside = module == entry or (entry != "robometa" and module.startswith(entry + "."))
            if inside and (best is None or len(entry) > len(best[1])):
                best = (row, entry)
    if best is None:
        raise AssertionError(f"{module} is in no layer of the table")
    return best


def imports(module: str, path: Path) -> set[str]:
    """The robometa modules ``module`` imports, anywhere in its file."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from robometa import tags` imports the module robometa.tags
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(n for n in names if n == "robometa" or n.startswith("robometa."))
    return found


def violations() -> list[str]:
    out = []
    for module, path in MODULES.items():
        row, package = unit(module)
        for target in sorted(imports(module, path)):
            if target not in MODULES:
                out.append(f"{module} imports {target}, which is no module")
                continue
            trow, tpackage = unit(target)
            if tpackage == package:
                continue
            if trow <= row:
                what = "its own layer" if trow == row else f"a higher layer ({LAYERS[trow][0]})"
                out.append(f"{module} ({LAYERS[row][0]}) imports {target}, {what}")
    return out


def test_every_import_points_down_the_layer_table():
    assert violations() == []


def test_the_checker_sees_upward_imports_anywhere(tmp_path, monkeypatch):
    """The check itself must fail on an upward import, even one hidden in a function."""
    fake = tmp_path / "robometa" / "tasks" / "sneaky.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from robometa.trainer import Trainer\n    return Trainer\n")
    monkeypatch.setitem(MODULES, "robometa.tasks.sneaky", fake)
    assert violations() == [
        "robometa.tasks.sneaky (task families, their registry and gymnasium ids) imports robometa.trainer, "
        "a higher layer (the training loop)"
    ]


def _fresh_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_robometa_loads_no_family_env_or_rendering_but_registers_every_id():
    code = (
        "import json, sys\n"
        "import robometa, gymnasium\n"
        "from robometa.tasks import env_ids\n"
        "mods = sorted(m for m in sys.modules if m.startswith('robometa'))\n"
        "ids = [i for i in env_ids() if i in gymnasium.registry]\n"
        "print(json.dumps({'modules': mods, 'ids': ids, 'all': env_ids()}))\n"
    )
    data = json.loads(_fresh_python(code))
    assert data["modules"] == ["robometa", "robometa.errors", "robometa.tasks", "robometa.tasks.base"]
    assert data["ids"] == data["all"] and len(data["ids"]) >= 12


@pytest.mark.parametrize("env_id", ["robometa/CheetahVel-v0", "robometa/Reach-v0"])
def test_gymnasium_make_loads_what_it_needs_on_first_use(env_id):
    code = (
        "import sys, gymnasium, robometa\n"
        f"env = gymnasium.make({env_id!r})\n"
        "env.reset(seed=0)\n"
        "print(env.spec.max_episode_steps, type(env.unwrapped).__name__, "
        "any(m.startswith('robometa.viz') for m in sys.modules))\n"
    )
    assert _fresh_python(code).split() == ["200", "MetaEnv", "False"]
