"""Load ``gateway.yaml``: YAML → ``${ENV}`` substitution → pydantic validation → snapshot.

A ``ConfigSnapshot`` is immutable and carries a short content hash of the file as written
(before environment substitution, so no secret feeds the hash), which later stamps every log
row. Every problem is reported as ``path: message`` lines in one ``ConfigError``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.config.models import GatewayConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config cannot be used. ``problems`` lists ``path: message`` strings."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid config\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """A validated config plus where it came from and its content hash (12 hex chars)."""

    config: GatewayConfig
    source: str
    content_hash: str


def _substitute_env(node: Any, path: str, problems: list[str]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(node, dict):
        return {k: _substitute_env(v, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_env(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def repl(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    problems.append(f"{path}: environment variable {name} is not set")
                    return ""
                return default
            return value

        return _ENV_REF.sub(repl, node)
    return node


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_config(text: str, source: str = "<string>") -> ConfigSnapshot:
    """Validate YAML text and return a snapshot.

    Raises ``ConfigError`` with path-qualified problems for YAML syntax errors, unset
    environment variables, schema violations and dangling references.
    """
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"YAML syntax: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["top level must be a mapping"])
    problems: list[str] = []
    raw = _substitute_env(raw, "", problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            where = _format_loc(err["loc"])
            problems.extend(f"{where}: {line}" if where else line for line in msg.splitlines())
        raise ConfigError(source, problems) from None
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return ConfigSnapshot(config=config, source=source, content_hash=digest)


def load_config(path: str | os.PathLike) -> ConfigSnapshot:
    """Read and validate a config file. Raises ``ConfigError`` (also for an unreadable file)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read: {exc.strerror}"]) from None
    return parse_config(text, str(p))


DEFAULT_CONFIG_YAML = """\
# Embedded defaults: one deterministic mock backend, no servers needed.
backends:
  mock:
    type: mock
    mock: {ttft_ms: 20, itl_ms: 5, tokens: 24, chunk_tokens: 2}
models:
  mock-gpt:
    targets: [{backend: mock, model: mock-gpt}]
  mock-embed:
    targets: [{backend: mock, model: mock-embed}]
"""


def default_config() -> ConfigSnapshot:
    """The embedded defaults used by ``llm-gateway demo`` and ``serve`` without ``--config``."""
    return parse_config(DEFAULT_CONFIG_YAML, "<embedded defaults>")
