"""A ``max_tokens`` cap per tenant.

``MaxTokensCap`` (built-in name ``max_tokens_cap``) settings:

- ``default``: the cap for tenants not listed (unset: no cap for them);
- ``tenants``: tenant name (or glob) → cap;
- ``mode``: ``clamp`` (lower a larger value to the cap; default) or ``reject`` (400);
- ``set_missing``: add the cap when the request sets no limit (default true), in ``field``
  (default ``max_tokens``; use ``max_completion_tokens`` for reasoning models).

Applies to chat/completions and completions (``max_tokens``, ``max_completion_tokens``) and
responses (``max_output_tokens``).
"""

from __future__ import annotations

import fnmatch

from gateway.plugin_api import PluginRequest, Verdict

_FIELDS = {
    "chat/completions": ("max_completion_tokens", "max_tokens"),
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),
}


class MaxTokensCap:
    """Before each request: clamp (or reject) a completion limit above the tenant's cap."""

    def __init__(self, default: int | None = None, tenants: dict[str, int] | None = None, mode: str = "clamp",
                 set_missing: bool = True, field: str = "max_tokens"):
        if mode not in ("clamp", "reject"):
            raise ValueError("mode must be clamp or reject")
        self.default = default
        self.tenants = dict(tenants or {})
        self.mode = mode
        self.set_missing = set_missing
        self.field = field

    def cap_for(self, tenant: str) -> int | None:
        if tenant in self.tenants:
            return self.tenants[tenant]
        for pattern, cap in self.tenants.items():
            if fnmatch.fnmatchcase(tenant, pattern):
                return cap
        return self.default

    async def before_request(self, request: PluginRequest) -> Verdict | None:
        fields = _FIELDS.get(request.endpoint)
        body = request.body
        if fields is None or body is None:
            return None
        cap = self.cap_for(request.tenant)
        if cap is None:
            return None
        changed = present = False
        for name in fields:
            value = body.get(name)
            if value is None:
                continue
            present = True
            if isinstance(value, int) and value > cap:
                if self.mode == "reject":
                    return Verdict.reject(f"{name} of {value} exceeds this tenant's cap of {cap}.",
                                          code="max_tokens_exceeded")
                body[name] = cap
                changed = True
        if not present and self.set_missing:
            field = self.field if request.endpoint == "chat/completions" else fields[0]
            body[field] = cap
            changed = True
        return Verdict.modify() if changed else None
