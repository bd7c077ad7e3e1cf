"""The row TTL of the request tables: ``ttl_days`` compared with what each table has, and the
``ALTER TABLE`` statements that bring it there (run after the migrations, at every start).

Not a migration: the config may change ``ttl_days`` any time, and the config is the authority.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gateway.telemetry.schema import SchemaOptions, _literal, _q, _Renderer

# Tables with a row TTL (``ttl_days``); the rollups and the prompt/feedback tables keep rows.
TTL_TABLES = ("llm_requests", "llm_attempts")
_TTL_CLAUSE = re.compile(r"\sTTL\s(.*?)(?:\sSETTINGS\s.*)?$", re.S)


def ttl_query(opts: SchemaOptions) -> str:
    """The statement that reads ``(name, engine_full)`` of the tables with a row TTL."""
    names = ", ".join(_literal(_Renderer(opts).storage(t)) for t in TTL_TABLES)
    return (f"SELECT name, engine_full FROM system.tables WHERE database = {_literal(opts.database)} "
            f"AND name IN ({names})")


def table_ttl(engine_full: str) -> str:
    """The TTL expression in a table's ``engine_full`` as ClickHouse prints it ('' for none)."""
    m = _TTL_CLAUSE.search(engine_full)
    return m.group(1).strip() if m else ""


def ttl_statements(opts: SchemaOptions, current: dict[str, str]) -> list[str]:
    """The ``ALTER TABLE`` statements that give each table in ``current`` (its storage name →
    its TTL as ``table_ttl`` reads it) the TTL of ``opts.ttl_days``: ``MODIFY TTL`` when it
    differs (ClickHouse then drops the rows it expires in a background mutation), ``REMOVE
    TTL`` when ``ttl_days`` is unset (keep rows forever) and the table has one. The config is
    the authority: a TTL set by hand on these tables is replaced."""
    r = _Renderer(opts)
    want = f"toDateTime(ts_start) + toIntervalDay({opts.ttl_days})" if opts.ttl_days else ""
    out = []
    for name in TTL_TABLES:
        table = r.storage(name)
        if table not in current or current[table] == want:
            continue
        alter = f"ALTER TABLE {r.db}.{_q(table)}{r.on_cluster}"
        out.append(f"{alter} MODIFY TTL {r.ttl_expr()}" if want else f"{alter} REMOVE TTL")
    return out


def apply_ttl(command: Callable[[str], object], query_rows: Callable[[str], Any], opts: SchemaOptions) -> list[str]:
    """Bring the tables' TTL to ``opts.ttl_days`` (after the migrations); returns the statements
    run. ``query_rows(sql)`` returns a statement's rows as tuples."""
    current = {str(name): table_ttl(str(engine)) for name, engine in query_rows(ttl_query(opts))}
    statements = ttl_statements(opts, current)
    for stmt in statements:
        command(stmt)
    return statements
