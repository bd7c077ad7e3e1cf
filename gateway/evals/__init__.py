"""Evaluations: a dataset run against candidates (public models, prompt versions) through the
gateway's own request path, scored, stored in ``llm_eval_runs``/``llm_eval_scores`` and
compared (``llm-gateway eval``; docs/llmops.md, "Evaluations").

``gates`` reads the newest finished run of a candidate and checks gates such as ``judge>=0.8``
(``eval run --gate``, and promotions through ``failing_gates``). Nothing here is imported by
the serving process: the statistics' numpy/scipy are imported inside the functions that use them.
"""
