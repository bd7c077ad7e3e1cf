"""The suite's own layout: test modules sit in ``unit/``, ``contract/`` or ``integration/``, and
what two of them share lives in ``tests/support/`` (or a conftest), never in a test module that
another imports (a test module changes with its own tests; importing from it ties two together)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
LAYERS = {"unit", "contract", "integration"}


def test_every_test_module_sits_in_a_layer_folder():
    misplaced = [str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py")
                 if "venv" not in p.parts and p.relative_to(TESTS).parts[0] not in LAYERS]
    assert misplaced == [], f"move these into tests/unit, tests/contract or tests/integration: {misplaced}"


def test_no_module_imports_from_a_test_module():
    offenders = []
    for path in TESTS.rglob("*.py"):
        if "venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            names += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            if any(part.startswith("test_") for name in names for part in name.split(".")):
                offenders.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert offenders == [], f"import shared helpers from tests/support instead: {offenders}"
