"""Built-in plugins of llm-gateway (see ``docs/access.md``).

This folder is an importable package (``plugins``, shipped with the distribution), so a config
names its plugins by import path or by short name:

- ``pii`` (``plugins.pii:PIIRedaction``): masks e-mail addresses, phone numbers and payment card
  numbers (Luhn-checked) in every text field before the request goes upstream; its
  ``plugins.pii:redact_for_log`` is a ``telemetry.bodies.redact`` hook for logged bodies.
- ``blocklist`` (``plugins.blocklist:BlockList``): rejects requests whose text matches a
  keyword or regular expression (400).

Both match on a normalised copy of the text (``_fold``) and scan the same fields (``_text``).
- ``max_tokens_cap`` (``plugins.max_tokens_cap:MaxTokensCap``): caps ``max_tokens`` per tenant.

Your own plugins can live anywhere: ``mypkg.hooks:MyHook`` (importable), ``./hooks/my.py:MyHook``
(loaded by path) or an entry point in the ``llm_gateway.plugins`` group.
"""
