"""How ``llm-gateway collections`` reaches a gateway: the running one, else one of its own.

With the embedded store a second process cannot open the store while ``serve`` runs, and
documents must be embedded through the gateway anyway (so every embeddings call is logged and
costed). So the commands talk HTTP to a gateway: ``--url``, else the one holding the data folder
(or at the config's address) when it answers, else the config's gateway started in this process
on a loopback port (as ``eval run`` does; its ingester on a thread, no vLLM server started),
which stops when the command ends. The admin key: ``--admin-key``, ``$GATEWAY_ADMIN_KEY`` or
the config's ``server.admin_key``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from gateway.cli.local_http import gateway_url, trust_env
from gateway.cli.store_client import ask_gateway, error_of
from gateway.cli.support import fail, say

FLUSH_TIMEOUT_S = 120


@dataclass
class Connection:
    """A gateway to call: its base URL and the admin key (``None``: none configured)."""

    url: str
    admin_key: str | None
    timeout: float
    in_process: bool = False

    def call(self, method: str, path: str, *, key: str | None = None, **request: Any) -> Any:
        """``method path`` with the admin key (or ``key``); the JSON answer, or exit 2 with the
        gateway's error message."""
        import httpx

        headers = {"Authorization": f"Bearer {key or self.admin_key}"} if (key or self.admin_key) else {}
        try:
            resp = httpx.request(method, self.url + path, headers=headers, timeout=self.timeout,
                                 trust_env=trust_env(self.url), **request)
        except httpx.HTTPError as exc:
            fail(f"{self.url}: {type(exc).__name__}: {exc}")
        if resp.status_code >= 400:
            message, code = error_of(resp)
            fail(f"{method} {path}: HTTP {resp.status_code}" + (f" ({code})" if code else "") + f": {message}")
        return resp.json()

    def flush(self) -> None:
        """Wait until the gateway's ingester has inserted what this gateway process logged."""
        answer = self.call("POST", f"/admin/telemetry/flush?timeout={FLUSH_TIMEOUT_S}")
        if not answer.get("flushed"):
            fail(f"the telemetry store did not take the rows within {FLUSH_TIMEOUT_S} s")


def _running(url: str, key: str | None, timeout: float) -> bool:
    resp = ask_gateway("GET", url, "/readyz", key, min(timeout, 10.0))
    return resp is not None


@contextlib.contextmanager
def connect(snapshot, url: str | None, admin_key: str | None, data_dir: str | None,
            timeout: float) -> Iterator[Connection]:
    """A ``Connection`` to the running gateway, else to one started here for the command."""
    key = admin_key or snapshot.config.server.admin_key
    target = url or gateway_url(snapshot, data_dir)
    if target and _running(target, key, timeout):
        yield Connection(target.rstrip("/"), key, timeout)
        return
    if url:
        fail(f"no gateway answers at {url}")
    _refuse_a_held_store(snapshot, data_dir)
    from gateway.app import build_app
    from gateway.proxy.server import BackgroundServer

    app = build_app(snapshot, data_dir=data_dir, launch_servers=False, manage_adapters=False)
    with BackgroundServer(app) as srv:
        say(f"collections: no gateway running; serving the config in this process at {srv.url}")
        yield Connection(srv.url, key, timeout, in_process=True)


def _refuse_a_held_store(snapshot, data_dir: str | None) -> None:
    """A gateway holding the data folder that does not answer (another address): refuse in one
    line rather than wait for a store this process cannot open."""
    from gateway.cli.preflight import holder_url
    from gateway.telemetry import telemetry_enabled

    t = snapshot.config.telemetry
    if not telemetry_enabled(snapshot):
        fail("collections are stored in the telemetry store: telemetry is off (telemetry.enabled: false or "
             "LLM_GATEWAY_TELEMETRY=off)")
    ddir = t.resolved_data_dir(data_dir)
    held = holder_url(Path(ddir)) if t.resolved_dsn(ddir).startswith("chdb://") else None
    if held:
        fail(f"the gateway at {held} holds the data directory {ddir} but does not answer; give --url")


def parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict (exit 2 on a malformed one)."""
    out: dict[str, str] = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise click.UsageError(f"{option} {pair!r}: expected KEY=VALUE")
        out[k] = v
    return out


__all__ = ["Connection", "connect", "parse_pairs"]
