"""Config dumps for admin output with every secret masked (``GET /admin/config``, the CLI)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

__all__ = ["public_config"]

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+(@)")


def public_config(model: Any) -> Any:
    """A JSON-ready dump of a config model for admin output: every field declared with
    ``repr=False`` (provider keys, backend headers, the admin key, DSNs, Redis URLs, key hashes)
    is masked as ``"***"``, and passwords inside any URL are masked too."""
    if isinstance(model, BaseModel):
        out = {}
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if not field.repr and value:
                out[name] = {k: "***" for k in value} if isinstance(value, dict) else "***"
            else:
                out[name] = public_config(value)
        return out
    if isinstance(model, dict):
        return {str(k): public_config(v) for k, v in model.items()}
    if isinstance(model, (list, tuple)):
        return [public_config(v) for v in model]
    if isinstance(model, str):
        return _URL_PASSWORD.sub(r"\1***\2", model) if "@" in model else model
    return model
