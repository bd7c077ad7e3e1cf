"""Ops queries: read-only SQL checks, saved queries, and running them against the store.

Saved queries are ``*.sql`` files whose leading comment lines describe them: the ones shipped
with the package (``gateway/telemetry/saved_queries/``, read through ``importlib.resources`` so
a wheel install has them), overridden by same-named files in ``telemetry.queries_dir`` and
``./config/queries``::

    -- Latency and TTFT percentiles by model over the last hours.
    -- params: hours=1
    SELECT … WHERE ts_start >= now64(3) - INTERVAL {hours:UInt32} HOUR

``{name:Type}`` placeholders are ClickHouse server-side query parameters; ``params:`` gives
their defaults, overridden by the caller. Tables are named unqualified: queries run with the
telemetry database as the session database.

Only ``SELECT``, ``WITH``, ``SHOW``, ``DESCRIBE``/``DESC``, ``EXPLAIN`` and ``EXISTS`` single
statements pass ``check_read_only`` (no ``INTO OUTFILE``); the server enforces the rest with
``readonly=1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

FORMATS = {
    "table": ("PrettyCompactMonoBlock", "text/plain; charset=utf-8"),
    "json": ("JSON", "application/json"),
    "jsonl": ("JSONEachRow", "application/x-ndjson"),
    "csv": ("CSVWithNames", "text/csv; charset=utf-8"),
    "tsv": ("TSVWithNames", "text/tab-separated-values; charset=utf-8"),
}
_READ_ONLY = {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class QueryRejected(ValueError):
    """The SQL is not a single read-only statement, or a saved query/param is unknown."""


def _code_only(sql: str) -> str:
    """``sql`` with comments removed and string/identifier literals blanked out."""
    out = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i) or c == "#" and sql.startswith("#!", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise QueryRejected("unterminated /* comment")
            out.append(" ")
            i = j + 2
            continue
        if c in "'\"`":
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            if j >= n:
                raise QueryRejected("unterminated quoted literal")
            out.append(c + "_" + c)
            i = j + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def check_read_only(sql: str) -> str:
    """Return ``sql`` without trailing ``;`` when it is one read-only statement; raise
    ``QueryRejected`` otherwise."""
    code = _code_only(sql).strip()
    stripped = code.rstrip(";").strip()
    if not stripped:
        raise QueryRejected("empty query")
    if ";" in stripped:
        raise QueryRejected("one statement at a time")
    first = re.match(r"[\s(]*([A-Za-z]+)", stripped)
    keyword = first.group(1).upper() if first else ""
    if keyword not in _READ_ONLY:
        raise QueryRejected(f"only {', '.join(sorted(_READ_ONLY))} statements are allowed (got {keyword or '?'})")
    if re.search(r"\bINTO\s+OUTFILE\b", stripped, re.IGNORECASE):
        raise QueryRejected("INTO OUTFILE is not allowed")
    return sql.strip().rstrip(";").rstrip()


@dataclass
class SavedQuery:
    """A saved query: ``name`` (file stem), ``description``, ``sql``, ``defaults`` (params)."""

    name: str
    description: str
    sql: str
    path: Path | Traversable
    defaults: dict[str, str] = field(default_factory=dict)


def parse_saved(path: Path | Traversable) -> SavedQuery:
    """Read one ``.sql`` file (a path or a package resource) with its leading ``--`` comment header."""
    text = path.read_text(encoding="utf-8")
    description, defaults = [], {}
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("--"):
            if s:
                break
            continue
        s = s[2:].strip()
        if s.lower().startswith("params:"):
            for pair in s[7:].split(","):
                key, sep, value = pair.partition("=")
                if sep and key.strip():
                    defaults[key.strip()] = value.strip()
        elif s:
            description.append(s)
    return SavedQuery(path.name.removesuffix(".sql"), " ".join(description), text, path, defaults)


def builtin_queries() -> Traversable:
    """The folder of saved queries shipped with the package."""
    return files("gateway.telemetry") / "saved_queries"


def query_dirs(extra: str | None = None) -> list[Path | Traversable]:
    """Folders searched for saved queries, first match wins: ``extra`` (``telemetry.queries_dir``),
    ``./config/queries``, then the package's own."""
    dirs = [Path(extra)] if extra else []
    dirs.append(Path.cwd() / "config" / "queries")
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen and r.is_dir():
            seen.add(r)
            out.append(r)
    return [*out, builtin_queries()]


def saved_queries(extra: str | None = None) -> dict[str, SavedQuery]:
    """Every saved query by name."""
    found: dict[str, SavedQuery] = {}
    for d in query_dirs(extra):
        for entry in sorted(d.iterdir(), key=lambda e: e.name):
            name = entry.name.removesuffix(".sql")
            if entry.name.endswith(".sql") and name not in found and entry.is_file():
                found[name] = parse_saved(entry)
    return found


def resolve(sql: str | None, saved: str | None, params: dict[str, Any] | None,
            extra_dir: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(sql, params)`` to run: the given SQL or the saved query ``saved`` with its defaults
    overlaid by ``params``. Raises ``QueryRejected``."""
    params = dict(params or {})
    if saved:
        if not _NAME_RE.match(saved):
            raise QueryRejected(f"bad saved query name {saved!r}")
        queries = saved_queries(extra_dir)
        q = queries.get(saved)
        if q is None:
            raise QueryRejected(f"no saved query {saved!r} (known: {', '.join(sorted(queries)) or 'none'})")
        sql = q.sql
        params = {**q.defaults, **params}
    if not sql:
        raise QueryRejected("give SQL or a saved query name")
    sql = check_read_only(sql)
    used = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*):", _code_only(sql)))
    missing = used - set(params)
    if missing:
        raise QueryRejected(f"missing query parameter(s): {', '.join(sorted(missing))}")
    return sql, {k: v for k, v in params.items() if k in used}


def clickhouse_format(fmt: str) -> tuple[str, str]:
    """``(ClickHouse format, content type)`` for ``table``/``json``/``jsonl``/``csv``/``tsv``."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise QueryRejected(f"unknown format {fmt!r} (use {', '.join(FORMATS)})") from None
