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

    max_queue_size: int = Field(2048, ge=1, description=(
        "spans held for export; more are dropped, never blocking a request"))
    schedule_delay_ms: float = Field(1000.0, gt=0, description="how often a batch leaves (ms)")
    max_export_batch_size: int = Field(512, ge=1, description="spans per export request")
    export_timeout_ms: float = Field(30000.0, gt=0, description="timeout of one export (ms)")


class TracingSettings(_Strict):
    """OpenTelemetry traces: a SERVER span per request, a CLIENT span per upstream attempt."""

    enabled: bool = Field(False, description="record OpenTelemetry spans")
    sample_ratio: float = Field(1.0, ge=0, le=1, description=(
        "share of new traces recorded (by trace id, so every service samples the same traces)"))
    parent_based: bool = Field(True, description="follow the sampled flag of the client's traceparent")
    exporter: Literal["otlp", "console", "none"] = Field("otlp", description=(
        "otlp (OTLP over HTTP/protobuf to endpoint), console (stdout) or none (ids still propagated and logged)"))
    endpoint: str | None = Field(None, description=(
        "the traces URL (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT or "
        "http://localhost:4318/v1/traces)"))
    headers: dict[str, str] = Field(default_factory=dict, repr=False, description=(
        "headers sent with every export (an API key: use ${ENV})"))
    timeout_s: float = Field(10.0, gt=0, description="timeout of one export request")
    compression: Literal["none", "gzip"] = Field("none", description="compression of export requests")
    service_name: str = Field("llm-gateway", description="service.name of the spans")
    resource_attributes: dict[str, str] = Field(default_factory=dict, description=(
        "more resource attributes of the spans"))
    capture_content: bool = Field(False, description=(
        "put prompts and completions on the spans (gen_ai.input.messages / gen_ai.output.messages)"))
    content_max_chars: int = Field(16384, ge=0, description="cap on each captured message")
    batch: BatchSettings = Field(BatchSettings(), description="the span batch processor")

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http:// or https:// URL (OTLP over HTTP)")
        return value or None


class MetricsSettings(_Strict):
    """``GET /metrics`` in Prometheus' text format, with its own access rule (not the admin
    guard, so a scraper needs no admin key).
    """

    enabled: bool = Field(True, description="serve GET /metrics")
    bearer_token: str | None = Field(None, repr=False, description=(
        "scrapes need Authorization: Bearer <token> (the admin key works too)"))
    allow_from: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS_NETWORKS), description=(
        "without a bearer_token, the networks (CIDRs) allowed to scrape"))
    multiprocess_dir: str | None = Field(None, description=(
        "serve --workers N: where the workers' metric files live (default: a fresh temp folder)"))
    refresh_interval_s: float = Field(5.0, gt=0, description=(
        "with several workers, how often each publishes its state gauges"))

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
    """Process logs on stderr; with ``json`` every line is a JSON object carrying
    ``request_id`` and ``trace_id`` while a request runs.
    """

    format: Literal["text", "json"] = Field("text", description=(
        "text, or json (one object a line; llm-gateway --log-format overrides)"))
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO", description=(
        "DEBUG, INFO, WARNING, ERROR or CRITICAL, any case (llm-gateway --log-level overrides)"))
    access_log: bool = Field(False, description=(
        "one line per proxied request (logger gateway.access): never bodies, headers or keys"))

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.upper() if isinstance(value, str) else value


class ObservabilitySettings(_Strict):
    """Traces, metrics and logs, each independent (docs/observability.md)."""

    tracing: TracingSettings = Field(TracingSettings(), description="OpenTelemetry traces (off by default)")
    metrics: MetricsSettings = Field(MetricsSettings(), description=(
        "GET /metrics for Prometheus (on by default)"))
    logging: LoggingSettings = Field(LoggingSettings(), description="process logs")
