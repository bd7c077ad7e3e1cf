"""Sessions: a caller's multi-call workflow as one tree of requests.

A caller groups requests with ``x-gateway-session-id`` (any string up to 256 characters) and
links a request to the one that caused it with ``x-gateway-parent-request-id`` (that
request's ``x-request-id``: the gateway's id, or the caller's own); the row gets ``session_id``
and ``parent_request_id``, which the tree resolves within the session to the parent row's
``request_id`` or ``client_request_id``. A chain (``gateway.chains``) does the same for its
steps by itself.

``llm-gateway sessions show ID`` runs the saved query ``session-tree`` (through a running
gateway's ``/admin/query`` like ``llm-gateway query``, or against the store directly) and
prints the requests as a tree with tokens, cost and latency per step and in total.
``RowSource`` is that query path, shared with ``llm-gateway dataset export``.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from gateway.cli.local_http import gateway_url
from gateway.cli.store_client import DATA_DIR_OPTION, DSN_OPTION, query_store, query_via_gateway, store_settings
from gateway.cli.support import config_option, load_cli_config
from gateway.config import environment
from gateway.telemetry.queries import QueryRejected, resolve

SESSION_QUERY = "session-tree"


class RowSource:
    """Runs read-only queries for a CLI command: through a gateway's ``/admin/query``
    (``url``; the default when the store is embedded chDB) or directly against the store."""

    def __init__(self, snapshot, *, url: str | None = None, admin_key: str | None = None,
                 dsn: str | None = None, data_dir: str | None = None, timeout: float = 120.0):
        self.snapshot = snapshot
        self.settings, self.store_dsn = store_settings(snapshot, dsn, data_dir)
        server = snapshot.config.server
        self.url = url or gateway_url(snapshot, data_dir) or ""
        self.via_gateway = bool(url) or (dsn is None and self.store_dsn.startswith("chdb://") and bool(self.url))
        self.explicit_url = bool(url)
        self.admin_key = admin_key or server.admin_key
        self.timeout = timeout
        self.queries_dir = snapshot.config.telemetry.queries_dir

    def rows(self, sql: str | None = None, params: dict[str, Any] | None = None,
             saved: str | None = None) -> list[dict]:
        """The result rows as dicts (``JSONEachRow``)."""
        params = {k: str(v) for k, v in (params or {}).items()}
        try:
            resolved_sql, resolved_params = resolve(sql, saved, params, self.queries_dir)
        except QueryRejected as exc:
            raise click.UsageError(str(exc)) from None
        data = None
        if self.via_gateway:
            payload: dict[str, Any] = {"format": "jsonl", "params": params}
            payload.update({"saved": saved} if saved else {"sql": sql})
            data = query_via_gateway(self.url, self.admin_key, payload, self.timeout)
            if data is None:
                if self.explicit_url:
                    raise click.ClickException(f"no gateway answers at {self.url}")
                self.via_gateway = False  # nothing listens: open the store ourselves
        if data is None:
            data = query_store(self.settings, self.store_dsn, resolved_sql, resolved_params, "JSONEachRow",
                               self.snapshot.config.telemetry.queries)
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]


# --- the tree ----------------------------------------------------------------------------
def build_tree(rows: list[dict]) -> list[tuple[int, dict]]:
    """``(depth, row)`` in display order: roots (no parent in the session) in time order, each
    followed by its children, depth first. A parent named by the caller's own id is the latest
    row of the session with that ``client_request_id`` (the first one when none is earlier)."""
    ids = {r["request_id"] for r in rows}
    by_client: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("client_request_id"):
            by_client.setdefault(r["client_request_id"], []).append(r)

    def parent_of(r: dict) -> str:
        parent = r.get("parent_request_id") or ""
        if not parent or parent in ids:
            return parent
        named = by_client.get(parent)
        if not named:
            return ""
        earlier = [p for p in named if str(p.get("ts_start", "")) <= str(r.get("ts_start", ""))]
        return (earlier[-1] if earlier else named[0])["request_id"]

    children: dict[str, list[dict]] = {}
    roots = []
    for r in rows:
        parent = parent_of(r)
        if parent and parent in ids and parent != r["request_id"]:
            children.setdefault(parent, []).append(r)
        else:
            roots.append(r)
    out: list[tuple[int, dict]] = []
    seen: set[str] = set()

    def walk(row: dict, depth: int) -> None:
        if row["request_id"] in seen:  # a cycle in caller-supplied parent ids
            return
        seen.add(row["request_id"])
        out.append((depth, row))
        for child in children.get(row["request_id"], ()):
            walk(child, depth + 1)

    for r in roots:
        walk(r, 0)
    for r in rows:  # anything left (a cycle): shown flat
        if r["request_id"] not in seen:
            walk(r, 0)
    return out


def totals(rows: list[dict]) -> dict[str, Any]:
    """Session totals. A chain's own row already sums its steps, so it is left out of the
    token and cost sums (its steps count); ``wall_ms`` spans the first start to the last end."""
    counted = [r for r in rows if r.get("provider") != "chain"]
    cost_values = [r["cost_usd"] for r in counted if r.get("cost_usd") is not None]
    return {
        "requests": len(rows),
        "errors": sum(1 for r in rows if int(r.get("status_code") or 0) >= 400),
        "prompt_tokens": sum(int(r.get("prompt_tokens") or 0) for r in counted),
        "completion_tokens": sum(int(r.get("completion_tokens") or 0) for r in counted),
        "total_tokens": sum(int(r.get("total_tokens") or 0) for r in counted),
        "cost_usd": round(sum(cost_values), 8) if cost_values else None,
        "latency_ms": round(sum(float(r.get("latency_ms") or 0) for r in counted), 1),
    }


def _label(row: dict) -> str:
    parts = [row.get("model") or "?"]
    if row.get("chain") and row.get("provider") == "chain":
        parts = [f"chain {row['chain']}"]
    if row.get("step"):
        parts.insert(0, f"[{row['step']}]")
    if row.get("prompt_id"):
        version = row.get("prompt_version")
        parts.append(f"prompt {row['prompt_id']}" + (f"@{version}" if version is not None else ""))
    return " ".join(parts)


def render_tree(session: str, rows: list[dict]) -> str:
    """The text ``sessions show`` prints."""
    if not rows:
        return f"session {session}: no requests logged (yet?)\n"
    lines = [f"session {session}: {len(rows)} requests"]
    for depth, r in build_tree(rows):
        cost = r.get("cost_usd")
        status = str(r.get("status_code"))
        if r.get("error_type"):
            status += f" {r['error_type']}"
        cache = {"hit": " cache-hit", "semantic_hit": " semantic-hit"}.get(r.get("cache_status") or "", "")
        lines.append(
            f"{'  ' * depth}{'└─ ' if depth else ''}{_label(r)}  {status}{cache}  "
            f"tokens {r.get('prompt_tokens', 0)}+{r.get('completion_tokens', 0)}={r.get('total_tokens', 0)}  "
            f"cost {'-' if cost is None else f'${cost:.6f}'}  {r.get('latency_ms')} ms  "
            f"id {r['request_id']}")
    t = totals(rows)
    cost = "-" if t["cost_usd"] is None else f"${t['cost_usd']:.6f}"
    lines.append(f"total: {t['requests']} requests, {t['errors']} errors, tokens {t['prompt_tokens']}+"
                 f"{t['completion_tokens']}={t['total_tokens']}, cost {cost}, "
                 f"{t['latency_ms']} ms summed over calls")
    return "\n".join(lines) + "\n"


def session_rows(source: RowSource, session: str) -> list[dict]:
    return source.rows(saved=SESSION_QUERY, params={"session": session})


# --- CLI -----------------------------------------------------------------------------------
def _source_options(fn):
    for deco in reversed((
            click.option("--url", default=None, help="Gateway base URL to query through (embedded store)."),
            click.option("--admin-key", envvar=environment.ADMIN_KEY, default=None,
                         help="Admin key ($GATEWAY_ADMIN_KEY)."),
            click.option("--timeout", type=float, default=120.0, show_default=True,
                         help="Seconds to wait for each query."),
            config_option, DATA_DIR_OPTION, DSN_OPTION)):
        fn = deco(fn)
    return fn


@click.group("sessions")
def sessions() -> None:
    """Sessions: requests grouped by x-gateway-session-id (and chains' steps)."""


@sessions.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print the rows and totals as JSON.")
@_source_options
def show(session_id: str, as_json: bool, url: str | None, admin_key: str | None, timeout: float,
         config_path: str | None, data_dir: str | None, dsn: str | None) -> None:
    """The requests of session SESSION_ID as a tree, with tokens, cost and latency per step and in total."""
    source = RowSource(load_cli_config(config_path), url=url, admin_key=admin_key, dsn=dsn, data_dir=data_dir,
                       timeout=timeout)
    rows = session_rows(source, session_id)
    if as_json:
        tree = [{"depth": d, **r} for d, r in build_tree(rows)]
        sys.stdout.buffer.write(orjson.dumps({"session_id": session_id, "requests": tree, "totals": totals(rows)},
                                             option=orjson.OPT_INDENT_2) + b"\n")
        return
    click.echo(render_tree(session_id, rows), nl=False)
