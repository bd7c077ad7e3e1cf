"""The public API for plugins stays exactly what its docs list, and the shipped plugins use only it."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.plugin_api as plugin_api

REPO = Path(__file__).resolve().parents[2]

# Changing this list changes what every plugin author may rely on: update plugins/README.md and
# docs/access.md with it.
EXPECTED = ["GatewayError", "PluginRequest", "PluginResponse", "Verdict"]


def test_public_names_are_exactly_the_documented_ones():
    assert sorted(plugin_api.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(plugin_api, name) is not None
    assert len(set(plugin_api.__all__)) == len(plugin_api.__all__)

def test_plugin_request_exposes_only_read_only_views():
    readable = {"request_id", "endpoint", "model_requested", "tenant", "api_key_id", "metadata", "headers"}
    props = {n for n, v in vars(plugin_api.PluginRequest).items() if isinstance(v, property)}
    assert props == readable
    assert all(vars(plugin_api.PluginRequest)[n].fset is None for n in readable)
    assert plugin_api.PluginRequest.__slots__ == ("_ctx", "body")


def gateway_imports(path: Path) -> list[str]:
    """The ``gateway`` modules a source file imports (at any depth: lazy imports count too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == "gateway"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "gateway":
                out.append(node.module)
    return out


def test_shipped_plugins_import_only_the_plugin_api():
    files = sorted((REPO / "plugins").glob("*.py"))
    assert files
    wrong = {f.name: mods for f in files if (mods := [m for m in gateway_imports(f) if m != "gateway.plugin_api"])}
    assert wrong == {}


def test_the_guard_sees_imports_from_internal_modules(tmp_path):
    sample = tmp_path / "p.py"
    sample.write_text("import gateway.core.context\n"
                      "def hook():\n    from gateway.plugins.stage import Verdict\n    from gateway import errors\n"
                      "from gateway.plugin_api import Verdict\n")
    assert sorted(gateway_imports(sample)) == ["gateway", "gateway.core.context", "gateway.plugin_api", "gateway.plugins.stage"]
