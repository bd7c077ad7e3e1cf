"""What a plain install needs is in the package: declared dependencies, package data (saved
queries, tiktoken encodings), and exact token counts with no network and no settings.

The wheel itself is built and exercised from a fresh virtualenv by
``tests/packaging/check_wheel.sh`` (CI runs it; it needs PyPI). These tests check the same
promises from the source tree, offline.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import socket
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from gateway.telemetry.queries import builtin_queries, resolve, saved_queries

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SHIPPED = ("gateway", "plugins", "loadtest")
DEV_EXTRAS = {"dev"}


def _req_name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;(]", req.strip(), maxsplit=1)[0]).lower()


# --- tokens -----------------------------------------------------------------------------------
COUNT_SCRIPT = """
import sys
from gateway.core.tokens import TokenCounter
counter = TokenCounter(load_timeout_s=120)
text = "Tokenizers split 1234567 numbers, don't they?\\n\\n  H\\u00e9llo w\\u00f6rld \\u4e16\\u754c"
print(counter.count_text(text, "gpt-4o"), counter.count_text(text, "gpt-4"))
"""


def test_token_counts_are_exact_offline_without_any_setting(tmp_path):
    """No network (proxies point at a closed port), an empty tiktoken cache, an empty HOME and
    temp folder: counts are still tiktoken's exact ones, read from the package."""
    cache, home, tmp = tmp_path / "tiktoken-cache", tmp_path / "home", tmp_path / "tmp"
    for d in (cache, home, tmp):
        d.mkdir()
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("no_proxy", "data_gym_cache_dir", "tiktoken_cache_dir")}
        env.update(TIKTOKEN_CACHE_DIR=str(cache), HOME=str(home), TMPDIR=str(tmp), HTTP_PROXY=dead,
                   HTTPS_PROXY=dead, ALL_PROXY=dead, http_proxy=dead, https_proxy=dead, all_proxy=dead,
                   PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
        out = subprocess.run([sys.executable, "-c", COUNT_SCRIPT], env=env, cwd=tmp, capture_output=True,
                             text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # tiktoken's own counts (o200k_base, cl100k_base); the ~4 characters/token fallback says 16.
    assert out.stdout.split() == ["19", "24"], out.stderr
    assert "unavailable" not in out.stderr
    assert not any(cache.iterdir()) and not any(tmp.iterdir())  # nothing downloaded or cached


def test_packaged_encodings_match_tiktokens_definition():
    from gateway.encodings import PACKAGED, PackagedEncodingError, load

    assert set(PACKAGED) == {"o200k_base", "cl100k_base"}
    o200k, cl100k = load("o200k_base"), load("cl100k_base")
    assert load("o200k_base") is o200k  # built once, shared
    assert (o200k.n_vocab, cl100k.n_vocab) == (200019, 100277)
    assert o200k.encode("hello world") == [24912, 2375] and cl100k.encode("hello world") == [15339, 1917]
    assert cl100k.encode("<|endoftext|>", allowed_special="all") == [100257]
    with pytest.raises(PackagedEncodingError):
        load("p50k_base")


# --- saved queries ----------------------------------------------------------------------------
def test_saved_queries_ship_with_the_package_and_user_folders_override(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # far from the checkout
    queries = saved_queries()
    assert {"latency-by-model", "session-tree", "cost-by-tenant-daily", "compare-models"} <= set(queries)
    assert all(q.path.name.endswith(".sql") and (builtin_queries() / q.path.name).is_file()
               for q in queries.values())
    assert str(queries["latency-by-model"].path).startswith(str(builtin_queries()))

    # ./config/queries overrides a shipped query of the same name and adds its own;
    # telemetry.queries_dir comes first of all.
    local = tmp_path / "config" / "queries"
    local.mkdir(parents=True)
    (local / "latency-by-model.sql").write_text("-- Mine.\nSELECT 1\n")
    (local / "mine.sql").write_text("-- Another.\n-- params: n=3\nSELECT {n:UInt8}\n")
    extra = tmp_path / "team"
    extra.mkdir()
    (extra / "mine.sql").write_text("-- The team's.\nSELECT 2\n")
    queries = saved_queries(str(extra))
    assert queries["latency-by-model"].description == "Mine."
    assert queries["mine"].description == "The team's."
    assert "session-tree" in queries
    sql, params = resolve(None, "mine", None)
    assert sql.endswith("SELECT {n:UInt8}") and params == {"n": "3"}


# --- the package's declarations ---------------------------------------------------------------
def test_every_data_file_in_the_packages_is_package_data():
    """A file the code reads at run time and the wheel lacks breaks only installed copies."""
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]
    missing = []
    for top in SHIPPED:
        for path in sorted((REPO / top).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc", ".md") or "__pycache__" in path.parts:
                continue
            package = path.parent
            while not (package / "__init__.py").exists():
                package = package.parent
            name = ".".join(package.relative_to(REPO).parts)
            rel = path.relative_to(package).as_posix()
            if not any(fnmatch.fnmatch(rel, g) for g in globs.get(name, [])):
                missing.append(f"{name}: {rel}")
    assert not missing, missing


def _imports(path: Path):
    """``(module, at_top_level)`` of absolute imports outside ``try: … except ImportError``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Try)
               and any("ImportError" in ast.unparse(h.type) for h in node.handlers if h.type)
               for n in ast.walk(node)}
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[0], id(node) in top) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module.split(".")[0], id(node) in top


def test_every_runtime_import_is_a_declared_dependency():
    """Module-level imports of the gateway need core dependencies; imports inside functions may
    come from a user-facing extra (``otel``); the load-test tool may use its ``bench`` extra."""
    project = PYPROJECT["project"]
    core = {_req_name(r) for r in project["dependencies"]}
    extras = {name: {_req_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    user_extras = set().union(*(reqs for name, reqs in extras.items() if name not in DEV_EXTRAS | {"bench"}))
    owners = metadata.packages_distributions()
    local = set(SHIPPED) | {"tests", "__future__"}
    problems = []
    for top in SHIPPED:
        for path in sorted((REPO / top).rglob("*.py")):
            for module, at_top in _imports(path):
                if module in sys.stdlib_module_names or module in local:
                    continue
                dists = {_req_name(d) for d in owners.get(module, [module])}
                allowed = core | (extras["bench"] if top == "loadtest" else set()) | (set() if at_top else user_extras)
                if not dists & allowed:
                    problems.append(f"{path.relative_to(REPO)}: {module} ({'module level' if at_top else 'in a function'})")
    assert not problems, problems


def test_version_option():
    out = subprocess.run([sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"llm-gateway, version {metadata.version('llm-gateway')}"
