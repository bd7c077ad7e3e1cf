"""The prompt stage: select a prompt version for a chat request, render it, inject it.

Selection, first match wins:

1. the body field ``prompt`` (what the OpenAI SDK sends with ``extra_body``):
   ``{"id": "support-bot", "label": "staging" | "version": 4, "variables": {...}, "mode": ...}``
   or the string ``"support-bot@staging"``; without ``id`` it takes the prompt of the header or
   of the model;
2. the header ``x-gateway-prompt: support-bot@production`` (``@4``, bare name = ``production``);
3. the public model's ``prompt`` in ``gateway.yaml`` (``models.support-bot.prompt``).

Variables come from ``prompt.variables`` over the header ``x-gateway-prompt-variables`` (a
JSON object). The mode is ``prompt.mode`` / header ``x-gateway-prompt-mode`` / the version's
``mode``: ``prepend`` puts the prompt's messages before the caller's, ``replace_system`` drops
the caller's system/developer messages and puts the prompt's first, ``template`` makes the
prompt's messages the whole conversation (the caller sends ``messages: []``). The version's
``params`` fill request fields the caller did not set. The ``prompt`` field is removed before
the request goes upstream.

The stage that calls ``apply_prompt`` is ``gateway.prompts.stage``. ``/v1/chat/completions`` and
Anthropic's ``/v1/messages`` (and its ``count_tokens``, which counts the prompt in, without the
version's params) take prompts (``prompt`` in a ``/v1/completions`` body is OpenAI's text prompt,
untouched). On Anthropic's paths a prompt is injected in Anthropic's form, so native and
translated targets alike take it: its system messages go into the ``system`` field, before the
caller's (which ``replace_system`` drops), its other turns into ``messages``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from gateway.core.context import RequestContext
from gateway.core.request_body import mark_mutated
from gateway.prompts.errors import PromptError
from gateway.prompts.models import LABEL_RE
from gateway.prompts.registry import EMPTY
from gateway.prompts.select import Ref, parse_ref

HEADER = "x-gateway-prompt"
VARIABLES_HEADER = "x-gateway-prompt-variables"
MODE_HEADER = "x-gateway-prompt-mode"
KEY_HEADER = "x-gateway-experiment-key"
CHAT = "chat/completions"
MESSAGES = "messages"
COUNT = "messages/count_tokens"  # counts what /v1/messages would send, the prompt included
PROMPTED = frozenset({CHAT, MESSAGES, COUNT})
MODES = ("prepend", "replace_system", "template")
# Response headers of a request that used a prompt, set by the stage, sent by ``add_headers``.
RESPONSE_HEADERS = web.RequestKey("gateway_prompt_headers", dict)
_FIELD_KEYS = frozenset({"id", "label", "version", "variables", "mode"})
_SYSTEM_ROLES = frozenset({"system", "developer"})
_SCALARS = (str, int, float, bool, type(None))
# Caller setting either of these keeps the prompt's default of the other one out too.
_TOKEN_LIMITS = frozenset({"max_tokens", "max_completion_tokens"})


def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """A response hook (``gateway.app`` runs it on ``on_response_prepare``): the prompt headers of a
    request that used a prompt."""
    headers = request.get(RESPONSE_HEADERS)
    if headers:
        response.headers.update(headers)


def _json_object(text: str, param: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise PromptError(f"{param} must be a JSON object", param=param) from None
    if not isinstance(value, dict):
        raise PromptError(f"{param} must be a JSON object", param=param)
    return value


def _selection(ctx: RequestContext, header: str | None, registry) -> tuple[Ref | None, dict, str | None, str, str]:
    """``(ref, variables, mode, mode_param, param)`` of the request; raises ``PromptError``."""
    body = ctx.body
    assert body is not None  # the stage runs on JSON requests only
    headers = ctx.headers
    field = body.pop("prompt", None)
    header_ref = parse_ref(header, HEADER) if header is not None else None
    fallback = header_ref or registry.by_model.get(ctx.model_requested)
    variables: dict[str, Any] = {}
    raw_vars = headers.get(VARIABLES_HEADER)
    if raw_vars:
        variables.update(_json_object(raw_vars, VARIABLES_HEADER))
    mode = headers.get(MODE_HEADER)
    mode_param = MODE_HEADER
    if field is None:
        return fallback, variables, mode, mode_param, (HEADER if header_ref is not None else "model")
    if isinstance(field, str):
        return parse_ref(field, "prompt"), variables, mode, mode_param, "prompt"
    if not isinstance(field, dict):
        raise PromptError("prompt must be an object {id, label | version, variables, mode} or a string "
                          "like name@label", param="prompt")
    unknown = sorted(set(field) - _FIELD_KEYS)
    if unknown:
        raise PromptError(f"prompt.{unknown[0]}: unknown field (allowed: id, label, version, variables, mode)",
                          param=f"prompt.{unknown[0]}")
    pid, label, version = field.get("id"), field.get("label"), field.get("version")
    if pid is not None:
        base = parse_ref(pid, "prompt.id")
    elif fallback is not None:
        base = fallback
    else:
        raise PromptError(f"prompt.id is required (model {ctx.model_requested!r} names no prompt)",
                          param="prompt.id")
    if label is not None and version is not None:
        raise PromptError("give prompt.label or prompt.version, not both", param="prompt.version")
    if label is not None:
        if not isinstance(label, str) or not (LABEL_RE.match(label)):
            raise PromptError("prompt.label must be a label name such as production", param="prompt.label")
        ref = Ref(base.name, label=label)
    elif version is not None:
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise PromptError("prompt.version must be a positive integer", param="prompt.version")
        ref = Ref(base.name, version=version)
    else:
        ref = base
    given = field.get("variables")
    if given is not None:
        if not isinstance(given, dict):
            raise PromptError("prompt.variables must be an object", param="prompt.variables")
        variables.update(given)
    if field.get("mode") is not None:
        mode, mode_param = field["mode"], "prompt.mode"
    return ref, variables, mode, mode_param, "prompt"


def experiment_key(ctx: RequestContext) -> str | None:
    """The caller's sticky key: ``x-gateway-experiment-key``, else the body's ``user``, else the
    tenant, else the API key id, else a fingerprint of the bearer key; ``None`` if none."""
    key = ctx.headers.get(KEY_HEADER)
    if key:
        return "h:" + key
    user = ctx.body.get("user") if ctx.body is not None else None
    if isinstance(user, str) and user:
        return "u:" + user
    if ctx.tenant:
        return "t:" + ctx.tenant
    if ctx.api_key_id:
        return "k:" + ctx.api_key_id
    auth = ctx.headers.get("Authorization") or ""
    if auth:
        return "a:" + hashlib.sha256(auth.encode()).hexdigest()[:16]
    return None


def _fresh(value: Any) -> Any:
    """A private copy of a mutable default (the version's params are shared by all requests)."""
    return value if isinstance(value, _SCALARS) else orjson.loads(orjson.dumps(value))


def _anthropic_system(body: Any, rendered: list[dict], mode: str) -> list[dict]:
    """Put the prompt's system messages into an Anthropic body's ``system`` field (strings join
    with a blank line; a caller's blocks, ``cache_control`` and all, stay after a new text block);
    returns its other turns, as Anthropic takes them (no ``name``)."""
    system = "\n\n".join(m["content"] for m in rendered if m["role"] in _SYSTEM_ROLES)
    own = None if mode == "replace_system" else body.get("system")
    if system and isinstance(own, list):
        body["system"] = [{"type": "text", "text": system}, *own]
    elif system:
        body["system"] = f"{system}\n\n{own}" if isinstance(own, str) and own else system
    elif own is None:
        body.pop("system", None)
    return [{"role": m["role"], "content": m["content"]} for m in rendered if m["role"] not in _SYSTEM_ROLES]


def apply_prompt(ctx: RequestContext, header: str | None) -> None:
    """Resolve, render and inject the request's prompt into ``ctx.body``; fill the context's
    prompt fields and the response headers. Raises ``PromptError``."""
    registry = ctx.runtime.compiled.get("prompts") or EMPTY
    if header is not None and header.strip() == "":
        raise PromptError(f"{HEADER} is empty", param=HEADER)
    ref, variables, mode, mode_param, param = _selection(ctx, header, registry)
    if ref is None:
        raise PromptError("prompt.id is required", param="prompt.id")
    if mode is not None and mode not in MODES:
        raise PromptError(f"{mode_param} must be one of {', '.join(MODES)}", param=mode_param)
    body = ctx.body
    assert body is not None  # the stage runs on JSON requests only
    resolved = registry.resolve(ref, experiment_key(ctx), param=param)
    cv = resolved.version
    mode = mode or cv.mode
    rendered = cv.render(variables)
    if ctx.endpoint != CHAT:
        rendered = _anthropic_system(body, rendered, mode)
    caller = body.get("messages")
    if not isinstance(caller, list):
        caller = []
    if mode == "prepend":
        body["messages"] = rendered + caller
    elif mode == "replace_system":
        body["messages"] = rendered + [m for m in caller
                                       if not (isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES)]
    else:  # template
        if caller:
            raise PromptError(f"prompt {cv.prompt}@{cv.version} is used in template mode: its messages are the "
                              "whole conversation; send the variables only (messages: [])", param="messages")
        body["messages"] = rendered
    params = cv.params
    if params and ctx.endpoint != COUNT:  # a count takes no sampling parameters
        limit_set = not _TOKEN_LIMITS.isdisjoint(body)
        for key, value in params.items():
            if key not in body and not (limit_set and key in _TOKEN_LIMITS):
                body[key] = _fresh(value)
    mark_mutated(body)  # the body changed: the client's bytes must not be forwarded
    ctx.prompt_id = cv.prompt
    ctx.prompt_version = cv.version
    ctx.prompt_label = resolved.label
    ctx.experiment_arm = resolved.arm
    out = {"x-gateway-prompt": cv.prompt, "x-gateway-prompt-version": str(cv.version)}
    if resolved.label:
        out["x-gateway-prompt-label"] = resolved.label
    if resolved.arm:
        out["x-gateway-experiment-arm"] = resolved.arm
    request = ctx.request
    if request is not None:
        request[RESPONSE_HEADERS] = out
