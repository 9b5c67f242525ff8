"""Every ErrorInfo reason the server can raise is in docs/ARCHITECTURE.md's table,
so a client author can rely on the table being the whole list."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server" / "pointsman" / "server"
TABLE = ROOT / "docs" / "ARCHITECTURE.md"


def _module_constants(tree: ast.Module) -> dict[str, str]:
    constants: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = node.value.value
    return constants


def _reasons_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    constants = _module_constants(tree)

    def value(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "reason":
            if (reason := value(node.value)) is not None:
                found.add(reason)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                names_reason = isinstance(item, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "reason" for t in item.targets
                )
                if names_reason and (reason := value(item.value)) is not None:
                    found.add(reason)
    return found


def test_every_raised_reason_is_in_the_architecture_table() -> None:
    raised: set[str] = set()
    for path in SERVER.rglob("*.py"):
        raised |= _reasons_in(path)
    assert len(raised) > 20, "the scan found too few reasons: it no longer sees how errors are raised"
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", TABLE.read_text()))
    assert sorted(raised - documented) == []
