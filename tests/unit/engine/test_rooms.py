"""The engine's rooms stay small and keep to each other's public names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "mlscale"
ENGINE = SRC / "engine"
MAX_LINES = 400


def _generated(path: Path) -> bool:
    return path.name.endswith("_sync.py") and path.with_name(
        path.name.replace("_sync.py", "_async.py")
    ).exists() and path.name != "concurrency_sync.py"


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_every_engine_room_is_under_400_lines(path: Path) -> None:
    if _generated(path):
        source = path.with_name(path.name.replace("_sync.py", "_async.py"))
        assert len(source.read_text().splitlines()) <= MAX_LINES
        return
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it into rooms"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# Deliberate, each with its reason where it is done: psycopg_pool keeps idle
# connections in a private deque, which pools.make_lifo swaps for a LIFO one.
ALLOWED = {"pools.py": {"pool._pool"}}


def _reaches(tree: ast.AST) -> list[str]:
    """Private names used from outside their module: imported by name, or read as an
    attribute of anything but ``self`` / ``cls``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [f"import {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            own = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            base = (
                isinstance(owner, ast.Call)
                and isinstance(owner.func, ast.Name)
                and owner.func.id == "super"
            )
            if not (own or base):
                found.append(f"{ast.unparse(owner)}.{node.attr} (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    imports = [r for r in _reaches(ast.parse(path.read_text())) if r.startswith("import ")]
    assert not imports, f"{path.name} imports private names: {imports}"


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_no_engine_room_reaches_into_another_objects_private_names(path: Path) -> None:
    allowed = ALLOWED.get(path.name, set())
    reaches = [
        r
        for r in _reaches(ast.parse(path.read_text()))
        if not r.startswith("import ") and r.split(" (")[0] not in allowed
    ]
    assert not reaches, f"{path.name} uses private names of other objects: {reaches}"


def test_the_rule_catches_a_reach_in() -> None:
    tree = ast.parse(
        "from .pools import _helper\n"
        "class A:\n"
        "    def f(self, other):\n"
        "        self._mine()\n"
        "        other._theirs()\n"
        "        self._cluster._x()\n"
    )
    assert _reaches(tree) == [
        "import _helper",
        "other._theirs (line 5)",
        "self._cluster._x (line 6)",
    ]
