"""llm-gateway: an async, OpenAI-compatible LLM gateway.

One folder per layer, lowest first: ``config`` (the config model, loader, settings) · ``core``
(context, errors, pipeline, SSE, the Feature interface, the outcome) · ``proxy`` (handlers,
attempts, upstream, relay, server) · ``providers`` · ``access`` · the features (``plugins``, ``prompts``, ``cache``,
``chains``, ``routing``) · ``telemetry`` · ``observability``, ``dashboard``, ``datasets``,
``vllm`` · ``admin`` · ``cli``. ``app.build_app`` (the composition root) wires them together;
``plugin_api`` is what plugins may import.
"""

__version__ = "0.1.0"
