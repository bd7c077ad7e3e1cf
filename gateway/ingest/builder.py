"""The ``RowBuilder`` for a config: prices, token counting, body logging and the secrets to mask.

The ingester builds rows, so it holds the config's pricing and redaction settings; it follows
the config file like the serving processes do, rebuilding this when the file's content changes.
"""

from __future__ import annotations

import socket

from gateway.config import ConfigSnapshot
from gateway.core.pricing import PriceTable
from gateway.core.secret_mask import backend_secrets
from gateway.core.tokens import TokenCounter
from gateway.telemetry.record import RowBuilder


def row_builder(snapshot: ConfigSnapshot, tokens: TokenCounter | None = None) -> RowBuilder:
    """A ``RowBuilder`` for ``snapshot`` (raises ``ValueError`` for an unusable redaction hook)."""
    cfg = snapshot.config
    t = cfg.telemetry
    builder = RowBuilder(config_hash=snapshot.content_hash, instance=socket.gethostname(),
                         prices=PriceTable(cfg.pricing), tokens=tokens or TokenCounter(),
                         bodies=t.bodies, error_message_max=t.error_message_max)
    builder.secrets = backend_secrets(cfg.backends)
    return builder
