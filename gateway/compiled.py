"""A config compiled as the gateway compiles it, for commands and tests that do not serve it.

The config layer (``gateway.config``) reads and validates the files into a ``ConfigSnapshot``;
what the prompt files, chain files and plugin paths mean is compiled by their features, in
``Feature.compile``, when the gateway starts and on every reload (``gateway.app``). Commands
that check or show a config (``check-config``, ``serve`` before it binds, ``prompts``,
``chains``) need the same parts and the same refusals without an application:
``compile_config`` calls the features' own compile functions, in their compile order.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.chains.registry import ChainRegistry, compile_chains
from gateway.config.loader import ConfigSnapshot
from gateway.plugins.resolve import check_plugins
from gateway.prompts.loading import compile_prompts
from gateway.prompts.registry import PromptRegistry


@dataclass(frozen=True, slots=True)
class CompiledConfig:
    """A snapshot with its compiled prompts and chains (``None``: the config has none)."""

    snapshot: ConfigSnapshot
    prompts: PromptRegistry | None
    chains: ChainRegistry | None


def compile_config(snapshot: ConfigSnapshot, previous: CompiledConfig | None = None) -> CompiledConfig:
    """Compile ``snapshot``'s plugins (paths checked), prompts and chains. ``previous``: the
    config in force, whose prompt versions count as recorded. Raises ``ConfigError`` with the
    path-qualified problems a start-up or reload would report."""
    check_plugins(snapshot)
    prompts = compile_prompts(snapshot, previous.prompts if previous is not None else None)
    return CompiledConfig(snapshot, prompts, compile_chains(snapshot, prompts))


__all__ = ["CompiledConfig", "compile_config"]
