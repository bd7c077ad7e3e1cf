"""Running a chain: each step is a request of its own through the gateway, in-process.

``ChainRunner.run(ctx, chain)`` is the terminal handler of a request to a chain model. For
every step it builds a child ``RequestContext`` (same client, headers and runtime; its own
request id) whose body names the step's model and prompt (``prompt: {id, label|version,
variables}``) and hands it to ``ProxyHandlers.call_internal``: the prompt stage renders it,
access, plugins and the cache apply, the router and attempt loop pick a backend, telemetry logs
a row. No HTTP call to the gateway itself is made.

Variables of a step: the caller's ``variables`` (body field, sent with ``extra_body``), ``input``
(the caller's last user message text), ``messages`` (the caller's messages) and each earlier
step's output under its ``output`` name (the assistant text, or the parsed JSON with
``parse_json``; a step that answered with tool calls only yields the tool-call list).

Every step row carries the chain's ``session_id`` (the caller's ``x-gateway-session-id``, else
the chain's request id), ``parent_request_id`` = the chain request, and metadata ``chain``,
``chain_version``, ``chain_step``. The chain's own row sums its steps' tokens and cost.

With ``stream: true`` the last step streams straight to the client through the normal stream
relay; earlier steps are never streamed. Limits: the steps count (checked at load, and here)
and ``deadline_s`` for the whole run (a streamed last step must start before it; once it
streams it is bounded by its backend's timeouts). A failing step ends the chain with an
OpenAI-format error naming the chain and the step.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from gateway.chains.registry import Chain
from gateway.core import outcome
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, InvalidRequestError
from gateway.core.request_body import RequestBody

_JSON = "application/json"
# Caller fields that are the chain's business, not the last step's request parameters.
_NOT_FORWARDED = frozenset({"model", "messages", "stream", "stream_options", "variables", "prompt", "metadata",
                            "user"})


class ChainStepError(GatewayError):
    """A step failed: the step's own status, type and code, the message naming the step."""

    def __init__(self, message: str, *, status: int, type_: str, code: str | None, param: str | None = None):
        super().__init__(message, param=param, code=code)
        self.status = status
        self.type = type_


def _step_error(chain: Chain, i: int, step, what: str, status: int, type_: str, code: str | None) -> ChainStepError:
    doing = f"model {step.model}" if step.retrieve is None else f"retrieve from {step.retrieve.collection}"
    return ChainStepError(f'chain "{chain.name}" step {i + 1} "{step.name}" ({doing}) failed: {what}',
                          status=status, type_=type_, code=code, param=f"chain.steps[{i}]")


def _last_user_text(messages: list) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _parse_json_output(text: str) -> Any:
    """JSON of a step's answer; a fenced block (```json … ```) is unwrapped first."""
    s = text.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else ""
        s = s.rsplit("```", 1)[0]
    return orjson.loads(s)


class ChainRunner:
    """Runs chains through ``handlers`` (a ``ProxyHandlers``: ``call_internal``)."""

    def __init__(self, handlers, retriever=None):
        self._handlers = handlers
        self._retriever = retriever

    def _child(self, ctx: RequestContext, chain: Chain, i: int, body: dict, stream: bool,
               session: str) -> RequestContext:
        now = time.perf_counter()
        child = RequestContext(request_id=str(uuid.uuid4()), endpoint="chat/completions", t_start=now,
                               ts_start=time.time(), client_ip=ctx.client_ip, user_agent=ctx.user_agent,
                               headers=ctx.headers)
        child.body = RequestBody(body)  # built here: encoded per target, never the client's bytes
        child.model_requested = body["model"]
        child.stream = stream
        child.request = ctx.request
        child.runtime = ctx.runtime
        child.config_hash = ctx.config_hash
        child.session_id = session
        child.parent_request_id = ctx.request_id
        child.metadata = {**(ctx.metadata or {}), "chain": chain.name, "chain_version": str(chain.version),
                          "chain_step": chain.steps[i].name}
        return child

    def _body(self, ctx: RequestContext, chain: Chain, i: int, values: dict, caller_messages: list,
              last: bool) -> dict:
        step = chain.steps[i]
        ref = chain.refs[i]
        body: dict[str, Any] = {"model": step.model,
                                "messages": [dict(m) if isinstance(m, dict) else m for m in caller_messages]
                                if step.include_messages else []}
        if ref is not None:
            prompt: dict[str, Any] = {"id": ref.name, "variables": values}
            if ref.version is not None:
                prompt["version"] = ref.version
            elif ref.label is not None:
                prompt["label"] = ref.label
            body["prompt"] = prompt
        body.update(orjson.loads(orjson.dumps(step.params)) if step.params else {})
        caller = ctx.body
        assert caller is not None  # a chain request is a JSON request
        if isinstance(caller.get("user"), str):
            body["user"] = caller["user"]
        if last:  # the caller's request parameters (max_tokens, temperature, tools …) shape the answer
            for key, value in caller.items():
                if key not in _NOT_FORWARDED:
                    body[key] = value
            if ctx.stream:
                body["stream"] = True
                if isinstance(caller.get("stream_options"), dict):
                    body["stream_options"] = caller["stream_options"]
        return body

    async def _call(self, child: RequestContext, deadline: float | None) -> web.StreamResponse:
        """``call_internal(child)`` bounded by ``deadline`` (perf_counter seconds; None: unbounded).
        On expiry the step is marked ``chain_deadline_exceeded`` (504) and cancelled."""
        task = asyncio.ensure_future(self._handlers.call_internal(child))
        try:
            if deadline is None:
                return await task
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.perf_counter()))
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            return task.result()
        outcome.error(child, 504, "chain_deadline_exceeded", "the chain's deadline passed during this step")
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, GatewayError):
            pass
        raise TimeoutError

    async def run(self, ctx: RequestContext, chain: Chain) -> web.StreamResponse:
        """Run ``chain`` for the chain request ``ctx``; returns the client's response."""
        body = ctx.body
        assert body is not None  # a chain request is a JSON request
        caller_messages = body.get("messages")
        if caller_messages is None:
            caller_messages = []
        if not isinstance(caller_messages, list):
            raise InvalidRequestError("'messages' must be an array of message objects.", param="messages")
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            raise InvalidRequestError("variables must be an object (the chain's inputs)", param="variables")
        headers = ctx.headers
        session = ctx.session_id or (headers.get("x-gateway-session-id") if headers is not None else None) \
            or ctx.request_id
        ctx.session_id = session
        if not ctx.parent_request_id and headers is not None:
            ctx.parent_request_id = headers.get("x-gateway-parent-request-id") or ""
        ctx.metadata = {**(ctx.metadata or {}), "chain": chain.name, "chain_version": str(chain.version),
                        "chain_hash": chain.content_hash[:12]}
        ctx.backend = ctx.provider = "chain"
        ctx.upstream_model = chain.name
        ctx.chain_steps = steps_done = []
        values: dict[str, Any] = {**variables, "input": _last_user_text(caller_messages),
                                  "messages": caller_messages}
        start = time.perf_counter()
        deadline = start + chain.deadline_s
        ctx.t_upstream_start = start
        n = len(chain.steps)
        if n > chain.max_steps:  # checked at load too; a guard for hand-built registries
            raise InvalidRequestError(f'chain "{chain.name}" has {n} steps, more than its limit of {chain.max_steps}')
        response: web.StreamResponse | None = None
        child: RequestContext | None = None
        for i, step in enumerate(chain.steps):
            last = i == n - 1
            stream = last and ctx.stream
            if time.perf_counter() >= deadline:
                raise _step_error(chain, i, step, f"the chain's deadline of {chain.deadline_s:g} s passed before "
                                  "this step started", 504, "server_error", "chain_deadline_exceeded")
            if step.retrieve is not None:  # never the last step (checked at load)
                values[step.output_name] = await self._retrieve(ctx, chain, i, values, deadline)
                continue
            child = self._child(ctx, chain, i, self._body(ctx, chain, i, values, caller_messages, last),
                                stream, session)
            if stream:  # the client's response is this step's: it carries the chain's id and headers
                child.response_headers = {**(ctx.response_headers or {}), **self.stream_headers(ctx, chain)}
            steps_done.append(child)
            try:
                response = await self._call(child, None if stream else deadline)
            except TimeoutError:
                raise _step_error(chain, i, step, f"the chain's deadline of {chain.deadline_s:g} s passed",
                                  504, "server_error", "chain_deadline_exceeded") from None
            except GatewayError as exc:
                raise _step_error(chain, i, step, exc.message, exc.status, exc.type, exc.code) from None
            if response.prepared:  # the streamed last step: already relayed to the client
                break
            status = response.status
            raw = bytes(response.body) if isinstance(response, web.Response) \
                and isinstance(response.body, (bytes, bytearray)) else b""
            if status >= 400:
                what, type_, code = f"HTTP {status}", "upstream_error", "chain_step_failed"
                try:
                    err = orjson.loads(raw)["error"]
                    what = f"HTTP {status}: {err.get('message')}"
                    type_, code = err.get("type") or type_, err.get("code") or code
                except Exception:
                    pass
                raise _step_error(chain, i, step, what, status, type_, code)
            if last:
                break
            values[step.output_name] = self._output(chain, i, step, raw)
        assert child is not None and response is not None  # a chain has at least one step
        self._finish_chain(ctx, child)
        if response.prepared:
            return response
        assert isinstance(response, web.Response)  # an unsent step answer is a whole JSON response
        return self._answer(ctx, chain, response)

    async def _retrieve(self, ctx: RequestContext, chain: Chain, i: int, values: dict, deadline: float) -> list:
        """Run retrieve step ``i``: its query rendered, the collection searched as the chain's
        caller; the hits' ids and distances are added to the chain's row."""
        from gateway.chains.retrieve import run_retrieve

        step = chain.steps[i]
        try:
            return await asyncio.wait_for(run_retrieve(self._retriever, ctx, chain, i, values),
                                          max(0.0, deadline - time.perf_counter()))
        except TimeoutError:
            raise _step_error(chain, i, step, f"the chain's deadline of {chain.deadline_s:g} s passed",
                              504, "server_error", "chain_deadline_exceeded") from None
        except GatewayError as exc:
            raise _step_error(chain, i, step, exc.message, exc.status, exc.type, exc.code) from None

    def _output(self, chain: Chain, i: int, step, raw: bytes) -> Any:
        try:
            message = orjson.loads(raw)["choices"][0]["message"]
        except Exception:
            raise _step_error(chain, i, step, "the answer is not a chat completion", 502, "upstream_error",
                              "chain_bad_output") from None
        content = message.get("content")
        if content is None and message.get("tool_calls"):
            return message["tool_calls"]
        text = content if isinstance(content, str) else ""
        if not step.parse_json:
            return text
        try:
            return _parse_json_output(text)
        except orjson.JSONDecodeError as exc:
            snippet = text[:200].replace("\n", " ")
            raise _step_error(chain, i, step, f"its output is not valid JSON ({exc}); output begins: {snippet!r}",
                              502, "upstream_error", "chain_output_not_json") from None

    @staticmethod
    def _finish_chain(ctx: RequestContext, last: RequestContext) -> None:
        """The chain's context takes its outcome from the last step."""
        outcome.copy(ctx, last)
        ctx.model_served = last.model_served
        ctx.finish_reason = last.finish_reason
        ctx.refusal = last.refusal
        ctx.t_first_token = last.t_first_token
        ctx.chunk_times = last.chunk_times
        ctx.completion_text = last.completion_text
        ctx.response_id = last.response_id
        ctx.attempts = sum(s.attempts for s in ctx.chain_steps or ())

    def _answer(self, ctx: RequestContext, chain: Chain, response: web.Response) -> web.Response:
        """The last step's answer as the chain's, with ``usage`` summed over the steps (when
        every step reported it) and the chain's headers."""
        raw = bytes(response.body) if isinstance(response.body, (bytes, bytearray)) else b""
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        steps = ctx.chain_steps or []
        if isinstance(answer, dict) and all(s.usage.prompt_tokens is not None for s in steps):
            answer["usage"] = {
                "prompt_tokens": sum(s.usage.prompt_tokens or 0 for s in steps),
                "completion_tokens": sum(s.usage.completion_tokens or 0 for s in steps),
                "total_tokens": sum((s.usage.total_tokens if s.usage.total_tokens is not None else
                                     (s.usage.prompt_tokens or 0) + (s.usage.completion_tokens or 0)) for s in steps),
            }
            raw = orjson.dumps(answer)
        ctx.response_body = raw
        headers = {"x-request-id": ctx.x_request_id, "x-gateway-chain": chain.name,
                   "x-gateway-chain-version": str(chain.version), "x-gateway-chain-steps": str(len(steps)),
                   "x-gateway-session-id": ctx.session_id, "x-gateway-backend": "chain"}
        if ctx.response_headers:
            headers.update(ctx.response_headers)
        return web.Response(status=response.status, body=raw, content_type=_JSON, headers=headers)

    def stream_headers(self, ctx: RequestContext, chain: Chain) -> dict[str, str]:
        return {"x-request-id": ctx.x_request_id, "x-gateway-chain": chain.name,
                "x-gateway-chain-version": str(chain.version), "x-gateway-session-id": ctx.session_id}
