"""Pydantic models for the ``observability:`` section of ``gateway.yaml``.

Three parts, each independent: ``tracing`` (OpenTelemetry spans over OTLP/HTTP, off by
default), ``metrics`` (``GET /metrics`` for Prometheus, on by default) and ``logging``
(format, level and the optional access line). Unknown keys are errors, as everywhere.
See docs/observability.md.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Where Prometheus usually scrapes from: this host and private networks (a Kubernetes pod
# network, a VPC). Add "0.0.0.0/0" and "::/0" to open /metrics to everyone.
DEFAULT_METRICS_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                            "fc00::/7")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchSettings(_Strict):
    """The ``BatchSpanProcessor``: spans wait in a bounded queue (dropped when it is full,
    never blocking a request) and leave in batches from a background thread."""

    max_queue_size: int = Field(2048, ge=1)
    schedule_delay_ms: float = Field(1000.0, gt=0)
    max_export_batch_size: int = Field(512, ge=1)
    export_timeout_ms: float = Field(30000.0, gt=0)


class TracingSettings(_Strict):
    """OpenTelemetry traces: a SERVER span per request, a CLIENT span per upstream attempt.

    ``sample_ratio``: share of new traces recorded (by trace id, so every service samples the
    same traces). ``parent_based``: follow the sampled flag of the client's ``traceparent``.
    ``exporter``: ``otlp`` (OTLP over HTTP/protobuf to ``endpoint``), ``console`` (stdout, for
    a quick look) or ``none`` (ids are still propagated and logged). ``endpoint``: the full
    traces URL; unset: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``
    or ``http://localhost:4318/v1/traces``. ``headers``: sent with every export (an API key:
    use ``${ENV}``). ``capture_content``: put prompts and completions on the spans
    (``gen_ai.input.messages`` / ``gen_ai.output.messages``), each capped at
    ``content_max_chars``.
    """

    enabled: bool = False
    sample_ratio: float = Field(1.0, ge=0, le=1)
    parent_based: bool = True
    exporter: Literal["otlp", "console", "none"] = "otlp"
    endpoint: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout_s: float = Field(10.0, gt=0)
    compression: Literal["none", "gzip"] = "none"
    service_name: str = "llm-gateway"
    resource_attributes: dict[str, str] = Field(default_factory=dict)
    capture_content: bool = False
    content_max_chars: int = Field(16384, ge=0)
    batch: BatchSettings = BatchSettings()

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http:// or https:// URL (OTLP over HTTP)")
        return value or None


class MetricsSettings(_Strict):
    """``GET /metrics`` in Prometheus' text format.

    Access (its own rule, not the admin guard, so a scraper needs no admin key): with
    ``bearer_token`` set a scrape needs ``Authorization: Bearer <token>`` (the admin key works
    too); without it clients from ``allow_from`` (CIDRs; default loopback and private networks)
    are let in. ``multiprocess_dir``: where ``serve --workers N`` keeps the workers' shared
    metric files (default: a fresh folder under the system temp dir). ``refresh_interval_s``:
    how often each worker publishes its state gauges (circuits, telemetry sink) with several
    workers.
    """

    enabled: bool = True
    bearer_token: str | None = Field(None, repr=False)
    allow_from: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS_NETWORKS))
    multiprocess_dir: str | None = None
    refresh_interval_s: float = Field(5.0, gt=0)

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an IP network (e.g. 10.0.0.0/8)") from None
        return value


class LoggingSettings(_Strict):
    """Process logs. ``format``: ``text`` or ``json`` (one object a line, with ``request_id`` and
    ``trace_id`` while a request runs). ``level``: a ``logging`` level name. ``access_log``: one
    line per proxied request (logger ``gateway.access``): ids, tenant, model, backend, status,
    latency, tokens — never bodies, headers or keys. ``serve --log-level/--log-format``
    override the file."""

    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    access_log: bool = False

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.upper() if isinstance(value, str) else value


class ObservabilitySettings(_Strict):
    """The ``observability:`` section."""

    tracing: TracingSettings = TracingSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()
