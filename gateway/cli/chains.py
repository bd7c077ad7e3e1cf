"""``llm-gateway chains …``: list, show and run the chains of a config.

``list`` and ``show`` read the chain files the way the gateway does (``--config``, resolved
like every command's: its ``chains.dir``, models and prompts apply). ``run NAME`` calls the
public model that serves the chain on a running gateway (``--url``, default the config's
``server.host:port``); when nothing answers there (and no ``--url`` was given) it starts the
gateway in-process for the one call.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson
import yaml

from gateway.cli.local_http import gateway_url, trust_env
from gateway.cli.support import config_option
from gateway.config import environment


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(2)


def _compiled(config_path: str | None):
    from gateway.cli.support import load_cli_compiled

    return load_cli_compiled(config_path)


def _chain(compiled, name: str):
    chains = compiled.chains
    if chains is None or name not in chains.chains:
        known = ", ".join(sorted(chains.chains)) if chains is not None else ""
        _fail(f"unknown chain {name!r} (known: {known or 'none'})")
    return chains.chains[name]


def serving_models(compiled, name: str) -> list[str]:
    """The public models that serve chain ``name`` (``compiled``: a ``gateway.compiled.CompiledConfig``)."""
    return [m for m, c in (compiled.chains.by_model.items() if compiled.chains else ()) if c.name == name]


_CONFIG = config_option


@click.group("chains")
def chains() -> None:
    """Chains: multi-step workflows served as public models."""


@chains.command("list")
@_CONFIG
def list_cmd(config_path: str | None) -> None:
    """Every chain with its version, steps and the models that serve it."""
    compiled = _compiled(config_path)
    registry = compiled.chains
    if registry is None or not registry.chains:
        click.echo("no chains" + (f" in {registry.directory}" if registry is not None else ""))
        return
    for name in sorted(registry.chains):
        c = registry.chains[name]
        served = ", ".join(serving_models(compiled, name)) or "not served (add models.<name>.chain)"
        steps = " → ".join(f"{s.name}({s.model or 'retrieve ' + s.retrieve.collection})"
                            for s in c.steps)
        click.echo(f"{name}  v{c.version}  {c.content_hash[:12]}  {steps}  [served as: {served}]"
                   + (f"  {c.spec.description}" if c.spec.description else ""))


@chains.command("show")
@click.argument("name")
@_CONFIG
def show_cmd(name: str, config_path: str | None) -> None:
    """A chain as loaded: its file, version, hash, limits and steps."""
    compiled = _compiled(config_path)
    c = _chain(compiled, name)
    click.echo(f"# {name} v{c.version} from {c.source} (hash {c.content_hash[:12]}); deadline {c.deadline_s:g} s, "
               f"at most {c.max_steps} steps; served as: {', '.join(serving_models(compiled, name)) or '-'}")
    click.echo(yaml.safe_dump(c.spec.model_dump(exclude_defaults=True), sort_keys=False, allow_unicode=True).rstrip())


def _variables(pairs: tuple[str, ...], json_pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--var {pair!r}: expected NAME=VALUE")
        out[key] = value
    for pair in json_pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--var-json {pair!r}: expected NAME=JSON")
        try:
            out[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            _fail(f"--var-json {key}: {value!r} is not JSON")
    return out


@chains.command("run")
@click.argument("name")
@click.option("--var", "pairs", multiple=True, metavar="NAME=VALUE", help="A string variable (repeatable).")
@click.option("--var-json", "json_pairs", multiple=True, metavar="NAME=JSON", help="A JSON-typed variable.")
@click.option("--message", "-m", default=None, help="A user message to send (the caller's messages).")
@click.option("--session", default=None, help="x-gateway-session-id (default: the chain request's id).")
@click.option("--url", default=None, help="Gateway base URL (default http://<server.host>:<server.port>).")
@click.option("--api-key", envvar=environment.API_KEY, default=None, help="Bearer key ($LLM_GATEWAY_API_KEY).")
@click.option("--timeout", type=float, default=300.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the whole response JSON.")
@_CONFIG
def run_cmd(name: str, pairs: tuple[str, ...], json_pairs: tuple[str, ...], message: str | None,
            session: str | None, url: str | None, api_key: str | None, timeout: float, as_json: bool,
            config_path: str | None) -> None:
    """Run chain NAME once and print the answer (request and session ids on stderr)."""
    import httpx

    compiled = _compiled(config_path)
    _chain(compiled, name)
    models = serving_models(compiled, name)
    snapshot = compiled.snapshot
    if not models:
        _fail(f"no model serves chain {name!r}: add `models.<public-name>.chain: {name}` to the config")
    body = {"model": models[0], "messages": [{"role": "user", "content": message}] if message else [],
            "variables": _variables(pairs, json_pairs)}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if session:
        headers["x-gateway-session-id"] = session
    def post(base: str):
        return httpx.post(base.rstrip("/") + "/v1/chat/completions", json=body, headers=headers, timeout=timeout,
                          trust_env=trust_env(base))

    base = url or gateway_url(snapshot)
    assert base is not None  # without a --data-dir, the config's address at least
    try:
        resp = post(base)
    except httpx.ConnectError:
        if url:
            _fail(f"no gateway answers at {url}")
        from gateway.app import build_app
        from gateway.proxy.server import BackgroundServer

        click.echo("# no gateway running: starting one in-process for this call", err=True)
        with BackgroundServer(build_app(snapshot)) as srv:
            resp = post(srv.url)
    click.echo(f"# request {resp.headers.get('x-request-id')}, session {resp.headers.get('x-gateway-session-id')}, "
               f"{resp.headers.get('x-gateway-chain-steps', '?')} steps, HTTP {resp.status_code}", err=True)
    if resp.status_code != 200:
        try:
            _fail(resp.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            _fail(resp.text[:2000])
    if as_json:
        click.echo(resp.text)
        return
    message_out = resp.json()["choices"][0]["message"]
    click.echo(message_out.get("content") or orjson.dumps(message_out.get("tool_calls")).decode())
