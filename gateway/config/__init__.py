"""Config files: pydantic models, loading with path-qualified errors, immutable snapshots."""

from gateway.config.loader import ConfigError, ConfigSnapshot, default_config, load_config, parse_config
from gateway.config.models import Backend, GatewayConfig, MockSettings, PublicModel, Target, Timeouts

__all__ = [
    "Backend", "ConfigError", "ConfigSnapshot", "GatewayConfig", "MockSettings", "PublicModel",
    "Target", "Timeouts", "default_config", "load_config", "parse_config",
]
