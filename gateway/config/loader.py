"""Load ``gateway.yaml``: YAML → ``${ENV}`` substitution → pydantic validation → snapshot.

A ``ConfigSnapshot`` is immutable and carries a short content hash of the file as written
(before environment substitution, so no secret feeds the hash), which later stamps every log
row. Every problem is reported as ``path: message`` lines in one ``ConfigError``.

The prompt and chain files the config names (``prompts.dir`` and ``chains.dir``, by default
``prompts/`` and ``chains/`` beside the config file) are read in the same step, as bytes
(``gateway.config.files``): their bytes feed the content hash, so an edit to one is a new
config. What they mean is not this layer's business: the prompts and chains features compile
them from the snapshot (``Feature.compile``, on start-up and on every reload), and refuse the
config, with the same path-qualified ``ConfigError``, when one is invalid. This package imports
nothing of the gateway outside ``gateway.config``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.config.files import NO_FOLDER, Folder, folder_path, read_folder, yaml_files
from gateway.config.models import GatewayConfig
from gateway.config.problems import validate

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config cannot be used. ``problems`` lists ``path: message`` strings."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid config\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """A validated config plus where it came from and its content hash (12 hex chars).

    ``base_dir``: the config file's folder (``None`` for a config given as text); relative paths
    in the config resolve against it. ``prompt_files`` / ``chain_files``: the folders of prompt
    and chain files as read with the config (compiled by the prompts and chains features)."""

    config: GatewayConfig
    source: str
    content_hash: str
    base_dir: Path | None = None
    prompt_files: Folder = NO_FOLDER
    chain_files: Folder = NO_FOLDER


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


def parse_config(text: str, source: str = "<string>", *, base_dir: str | os.PathLike | None = None) -> ConfigSnapshot:
    """Validate YAML text and return a snapshot.

    ``base_dir``: the config file's folder (relative paths and the default prompt and chain
    folders resolve against it). Raises ``ConfigError`` with path-qualified problems for YAML
    syntax errors, unset environment variables, schema violations and dangling references.
    """
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"YAML syntax: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["top level must be a mapping"])
    unset: list[str] = []
    raw = _substitute_env(raw, "", unset)
    config, problems = validate(GatewayConfig, raw)
    if unset or problems:
        # An unset variable reads as "": leave out what that alone explains.
        paths = [u.split(": ", 1)[0] for u in unset]
        raise ConfigError(source, unset + [p for p in problems if not _near(p.split(": ", 1)[0], paths)])
    assert config is not None  # no problems: a validated config
    base = Path(base_dir) if base_dir is not None else None
    prompts = read_folder(folder_path(config.prompts.dir, "prompts", base))
    chains = read_folder(folder_path(config.chains.dir, "chains", base))
    hashed = text.encode()
    if prompts.digest:
        hashed += b"\0prompts\0" + prompts.digest.encode()
    if chains.digest:
        hashed += b"\0chains\0" + chains.digest.encode()
    digest = hashlib.sha256(hashed).hexdigest()[:12]
    return ConfigSnapshot(config=config, source=source, content_hash=digest, base_dir=base,
                          prompt_files=prompts, chain_files=chains)


def _near(path: str, others: list[str]) -> bool:
    """Whether ``path`` is one of ``others``, or an ancestor or descendant of one."""
    return any(path == o or o.startswith((path + ".", path + "[")) or path.startswith((o + ".", o + "["))
               for o in others)


def watched_files(snapshot: ConfigSnapshot) -> list[Path]:
    """The prompt and chain files a watcher must check besides the config file (the folders
    are listed again on every call, so new files are seen)."""
    return [path for folder in (snapshot.prompt_files, snapshot.chain_files) if folder.directory is not None
            for path in yaml_files(folder.directory)]


def load_config(path: str | os.PathLike) -> ConfigSnapshot:
    """Read and validate a config file (and read its prompt and chain files). Raises
    ``ConfigError`` (also for an unreadable file)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read: {exc.strerror}"]) from None
    return parse_config(text, str(p), base_dir=p.parent)


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
    """The embedded defaults: ``llm-gateway demo``, and any command when no config file is found
    (``gateway.config.resolve``)."""
    return parse_config(DEFAULT_CONFIG_YAML, "<embedded defaults>")
