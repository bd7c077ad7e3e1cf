"""Fine-tuning datasets exported from the logged traffic.

``export.py`` pages through ``llm_requests`` (joined with the mean ``llm_feedback`` score of
each request) and turns every usable row into one OpenAI chat fine-tuning example
(``{"messages": [...], "tools"?: [...]}``, the assistant's answer last, tool calls kept),
with filters, deduplication, PII redaction and a held-out split; ``gateway/cli/dataset.py`` is
``llm-gateway dataset export``. It needs the bodies in
the rows: ``telemetry.bodies.request`` and ``.response`` must be on while the traffic is logged.
"""
