"""Which config file a command uses: one order for every command.

``--config PATH``, else ``$LLM_GATEWAY_CONFIG``, else ``./gateway.yaml``, else
``./config/gateway.yaml``, else the embedded defaults (one mock backend). ``serve``,
``check-config``, ``query``, ``drift``, ``sessions``, ``dataset``, ``prompts``, ``chains``,
``db`` and ``vllm launch`` all resolve through ``resolve_config`` and say which file they used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import environment

# Searched in the working directory, in this order, when neither --config nor the variable says.
SEARCHED = (Path("gateway.yaml"), Path("config") / "gateway.yaml")
EMBEDDED = "<embedded defaults>"


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    """``path``: the file to read (``None``: the embedded defaults); ``origin``: why."""

    path: Path | None
    origin: str

    def describe(self) -> str:
        if self.path is None:
            return f"{EMBEDDED} ({self.origin})"
        return f"{self.path} ({self.origin})"


def resolve_config(explicit: str | None) -> ResolvedConfig:
    """Apply the order above. An explicit path or the variable is used even when the file is
    missing (loading it then fails with the path in the message)."""
    if explicit:
        return ResolvedConfig(Path(explicit), "--config")
    from_env = environment.read(environment.CONFIG)
    if from_env:
        return ResolvedConfig(Path(from_env), f"${environment.CONFIG}")
    for candidate in SEARCHED:
        if candidate.is_file():
            return ResolvedConfig(candidate, "found in the working directory")
    return ResolvedConfig(None, f"no --config, ${environment.CONFIG}, ./gateway.yaml or ./config/gateway.yaml")


def load_resolved(resolved: ResolvedConfig):
    """The snapshot of ``resolved`` (raises ``ConfigError``)."""
    from gateway.config.loader import default_config, load_config

    return default_config() if resolved.path is None else load_config(resolved.path)
