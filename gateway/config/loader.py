"""Load ``gateway.yaml``: YAML → ``${ENV}`` substitution → pydantic validation → snapshot.

A ``ConfigSnapshot`` is immutable and carries a short content hash of the file as written
(before environment substitution, so no secret feeds the hash), which later stamps every log
row. Every problem is reported as ``path: message`` lines in one ``ConfigError``.

Prompt files (``prompts.dir``, default ``prompts/`` beside the config file) are loaded into
``ConfigSnapshot.prompts`` in the same step; their bytes feed the content hash, and a version
whose content changed since it was recorded is a config error (``gateway/prompts/lock.py``).
Chain files (``chains.dir``, default ``chains/`` beside the config file) are loaded into
``ConfigSnapshot.chains`` after the prompts (their steps name prompts and models); their bytes
feed the hash too (``gateway/chains/registry.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.config.models import GatewayConfig
from gateway.config.problems import validate
from gateway.prompts.errors import PromptConfigError
from gateway.prompts.files import prompt_files
from gateway.prompts.loading import load_registry, with_models
from gateway.prompts.registry import PromptRegistry

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
    ``prompts``: the compiled prompt registry (``None``: no prompt directory)."""

    config: GatewayConfig
    source: str
    content_hash: str
    prompts: PromptRegistry | None = None
    chains: Any = None  # gateway.chains.registry.ChainRegistry (None: no chain folder, no chain model)


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


def parse_config(text: str, source: str = "<string>", *, base_dir: str | os.PathLike | None = None,
                 previous: ConfigSnapshot | None = None) -> ConfigSnapshot:
    """Validate YAML text and return a snapshot.

    ``base_dir``: the config file's folder (relative prompt paths and the default prompt
    folder resolve against it). ``previous``: the snapshot in force, whose prompt versions
    count as recorded (a hot reload may not change them). Raises ``ConfigError`` with
    path-qualified problems for YAML syntax errors, unset environment variables, schema
    violations, dangling references and invalid or changed prompt versions.
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
    prompts = _load_prompts(config, source, base_dir, previous)
    chains = _load_chains(config, source, base_dir, prompts)
    hashed = text.encode()
    if prompts is not None and prompts.digest:
        hashed += b"\0prompts\0" + prompts.digest.encode()
    if chains is not None and chains.digest:
        hashed += b"\0chains\0" + chains.digest.encode()
    digest = hashlib.sha256(hashed).hexdigest()[:12]
    return ConfigSnapshot(config=config, source=source, content_hash=digest, prompts=prompts, chains=chains)


def _near(path: str, others: list[str]) -> bool:
    """Whether ``path`` is one of ``others``, or an ancestor or descendant of one."""
    return any(path == o or o.startswith((path + ".", path + "[")) or path.startswith((o + ".", o + "["))
               for o in others)


def chains_dir(config: GatewayConfig, base_dir: str | os.PathLike | None) -> Path | None:
    """The chain folder of ``config``: ``chains.dir`` (relative to ``base_dir``, else the
    working directory), else ``<base_dir>/chains``, else ``None``."""
    if config.chains.dir:
        p = Path(config.chains.dir)
        return p if p.is_absolute() or base_dir is None else Path(base_dir) / p
    return Path(base_dir) / "chains" if base_dir is not None else None


def _load_chains(config: GatewayConfig, source: str, base_dir, prompts):
    from gateway.chains.registry import load_chains

    registry, problems = load_chains(chains_dir(config, base_dir), config, prompts)
    if problems:
        raise ConfigError(source, problems)
    return registry


def prompts_dir(config: GatewayConfig, base_dir: str | os.PathLike | None) -> Path | None:
    """The prompt folder of ``config``: ``prompts.dir`` (relative to ``base_dir``, else the
    working directory), else ``<base_dir>/prompts``, else ``None``."""
    if config.prompts.dir:
        p = Path(config.prompts.dir)
        return p if p.is_absolute() or base_dir is None else Path(base_dir) / p
    return Path(base_dir) / "prompts" if base_dir is not None else None


def _load_prompts(config: GatewayConfig, source: str, base_dir, previous: ConfigSnapshot | None):
    directory = prompts_dir(config, base_dir)
    refs = {name: m.prompt for name, m in config.models.items() if m.prompt}
    if directory is None and not refs:
        return None
    lock: str | Path | None = config.prompts.lock_file
    if lock and base_dir is not None and not Path(lock).is_absolute():
        lock = Path(base_dir) / lock
    try:
        registry = load_registry(directory, lock, previous.prompts if previous is not None else None)
    except PromptConfigError as exc:
        raise ConfigError(source, exc.problems) from None
    registry, problems = with_models(registry, refs)
    if problems:
        raise ConfigError(source, problems)
    return registry


def watched_files(snapshot: ConfigSnapshot) -> list[Path]:
    """The prompt and chain files a watcher must check besides the config file (the folders
    are listed again on every call, so new files are seen)."""
    prompts = snapshot.prompts
    files = [] if prompts is None or prompts.directory is None else prompt_files(Path(prompts.directory))
    chains = snapshot.chains
    if chains is not None and chains.directory is not None:
        from gateway.chains.registry import chain_files

        files += chain_files(Path(chains.directory))
    return files


def load_config(path: str | os.PathLike, *, previous: ConfigSnapshot | None = None) -> ConfigSnapshot:
    """Read and validate a config file (and its prompt files). ``previous``: see
    ``parse_config``. Raises ``ConfigError`` (also for an unreadable file)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read: {exc.strerror}"]) from None
    return parse_config(text, str(p), base_dir=p.parent, previous=previous)


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
