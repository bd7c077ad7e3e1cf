"""llm-gateway: an async, OpenAI-compatible LLM gateway.

The package is laid out one job per module; ``app.build_app`` wires them together.
"""

__version__ = "0.1.0"
