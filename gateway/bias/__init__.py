"""Bias monitoring: per segment of the traffic (a metadata value, a tenant, …) refusal rate,
error rate, feedback score, output length and latency, each tested for a disparity across the
segments; and rater bias, the same over feedback grouped by who gave it.

Modules: ``stats`` (the tests, with scipy imported inside them), ``analysis`` (the saved
queries' counts → checks), ``child`` (the tests in a child process, for the serving process),
``render`` (the text table), ``panel`` (the dashboard's ``/admin/dashboard/bias``);
``llm-gateway bias`` is ``gateway/cli/bias.py``. docs/llmops.md, "Bias monitoring".
"""
