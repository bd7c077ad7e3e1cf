"""Multipart uploads: read a form's text fields, not its files, then send the body on as it came.

Audio transcriptions, image edits, file uploads name their ``model`` (and ``stream``) in a
``multipart/form-data`` body next to files of up to hundreds of megabytes. ``read_form`` reads
the body only as far as it must — until ``model`` is known (at once, for a path ``passthrough:``
routes: ``/v1/files`` forms name no model) and then a file part begins, or a text field runs
past ``_FIELD_MAX`` (a long ``prompt`` is streamed on like a file, never kept), or what was
read passes ``_HEAD_MAX`` (many short fields); or the body ends — keeping those first bytes; the
rest is never read here. ``Form.body(model)`` is then the whole body for the upstream: the bytes
read (with the ``model`` value replaced by the target's name when it differs) followed by the
rest, streamed from the client as the upstream reads it. ``model`` itself is read whole or not
at all: longer than ``_FIELD_MAX``, it is refused (400). A form that names its model only after
a large part is read up to the limit (``server.upload_limit_bytes``), never more: nothing can be
sent before the target is known.

The parts are found by their boundary (RFC 7578): ``--boundary`` lines, each part's headers up
to a blank line, its content up to the next ``\\r\\n--boundary``. Only ``Content-Disposition``'s
``name`` and ``filename`` are read; a part with a ``filename`` is a file.

A form that names ``model`` twice is refused (400 ``duplicate_key``, as for JSON): backends built
on Starlette read the last one, a model the key was never checked for. The streamed rest is
watched for a ``model`` part too (a second one; or, on a path ``passthrough:`` routes, one after
the file, which would reach the backend unchecked); a failure of the client's body while it
streams on (past the limit, such a ``model``, a broken framing) is raised as the client's error.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from email.message import Message

from aiohttp import web

from gateway.core.errors import InvalidRequestError, PayloadTooLargeError

_FIELD_MAX = 64 * 1024  # a longer text field is passed on unread (a prompt, say), never kept
_HEAD_MAX = 1024 * 1024  # once routable, no more than this (and one part) is held before sending on
_HEADERS_MAX = 16 * 1024  # a part's headers longer than this: not a form we understand
TWICE = "The form names `model` more than once."
LATE = "The form names `model` after a file or a long field here: send `model` before them."
LONG = f"The form's `model` field is longer than {_FIELD_MAX} bytes."


def boundary_of(content_type: str) -> bytes | None:
    """The ``boundary`` parameter of a ``multipart/form-data`` Content-Type, or None."""
    message = Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 200:
        return None
    return boundary.encode("latin-1", "replace")


def _disposition(headers: bytes) -> tuple[str | None, bool]:
    """``(name, is_file)`` from a part's header block."""
    for line in headers.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-disposition":
            message = Message()
            message["content-disposition"] = value.decode("utf-8", "replace").strip()
            name = message.get_param("name", header="content-disposition")
            return (name if isinstance(name, str) else None), \
                message.get_param("filename", header="content-disposition") is not None
    return None, False


class Form:
    """What ``read_form`` learned: ``fields`` (the text fields read), ``head`` (the bytes
    read), ``rest`` (the unread remainder, None when ``head`` is the whole body)."""

    __slots__ = ("fields", "head", "rest", "_model_at", "_limit", "_next_part", "_named", "_carry")

    def __init__(self, fields: dict[str, str], head: bytes, rest: AsyncIterator[bytes] | None,
                 model_at: tuple[int, int] | None, limit: int, next_part: bytes, named: bool, carry: bytes):
        self.fields = fields
        self.head = head
        self.rest = rest
        self._model_at = model_at
        self._limit = limit
        self._next_part = next_part
        self._named = named  # a ``model`` part was read
        self._carry = carry  # the end of ``head`` where the watch of the rest begins

    @property
    def whole(self) -> bool:
        """Whether the body was read to its end (then it may be sent more than once)."""
        return self.rest is None

    def body(self, model: str) -> tuple[bytes | AsyncIterable[bytes], int]:
        """The body to send with ``model`` in the form, and how many bytes longer than the
        client's it is (to correct its Content-Length)."""
        head = self.head
        at = self._model_at
        if at is not None and model and head[at[0]:at[1]] != model.encode():
            head = head[:at[0]] + model.encode() + head[at[1]:]
        delta = len(head) - len(self.head)
        rest = self.rest
        if rest is None:
            return head, delta
        self.rest = None  # a body streamed from the client can be sent once
        return _chain(head, rest, len(self.head), self._limit, self._next_part, self._carry,
                      TWICE if self._named else LATE), delta


def _watch(seen: bytes, next_part: bytes, refusal: str) -> bytes:
    """Refuse ``seen`` if it holds a part named ``model``; return what the next read is to be
    seen after (a delimiter or part headers cut by the end of this read)."""
    carry = seen[-(len(next_part) - 1):]
    i = seen.find(next_part)
    while i >= 0:
        head_end = seen.find(b"\r\n\r\n", i)
        if head_end < 0:  # the part's headers are not all here yet
            return seen[i:i + _HEADERS_MAX]
        name, is_file = _disposition(seen[i + len(next_part):head_end])
        if name == "model" and not is_file:
            raise InvalidRequestError(refusal, param="model", code="duplicate_key")
        i = seen.find(next_part, head_end)
    return carry


async def _chain(head: bytes, rest: AsyncIterator[bytes], read: int, limit: int, next_part: bytes, carry: bytes,
                 refusal: str) -> AsyncIterator[bytes]:
    """``head``, then the rest as the client sends it; each read is checked before it goes on
    (the limit; a part named ``model``, its delimiter and headers perhaps split across reads)."""
    yield head
    while (chunk := await _next(rest)) is not None:
        read += len(chunk)
        if read > limit:
            raise PayloadTooLargeError(f"Request body exceeds the limit of {limit} bytes.")
        carry = _watch(carry + chunk, next_part, refusal)
        yield chunk


async def read_form(request: web.Request, limit: int, model_may_follow: bool = True) -> Form:
    """Read ``request``'s multipart body up to what ``Form`` needs (see the module's docstring).
    ``model_may_follow``: look for ``model`` past a file (else a file ends the reading).
    Raises ``InvalidRequestError`` for a form without a boundary or with a ``model`` over
    ``_FIELD_MAX``, ``PayloadTooLargeError`` past ``limit``."""
    boundary = boundary_of(request.headers.get("Content-Type", ""))
    if boundary is None:
        raise InvalidRequestError("A multipart/form-data body needs a `boundary` in its Content-Type.")
    dash, next_part = b"--" + boundary, b"\r\n--" + boundary
    chunks = request.content.iter_any()
    buf = bytearray()
    fields: dict[str, str] = {}
    model_at: tuple[int, int] | None = None
    named = False  # a ``model`` part was read
    pos = 0  # where the next delimiter (or the current part's end) is looked for
    part: tuple[str | None, bool, int] | None = None  # the part being read: name, is_file, content start
    stop: int | None = None  # where the rest to stream on begins, to be watched for ``model``
    ended = False
    while True:
        routable = model_at is not None or not model_may_follow  # what follows can be sent on unread
        if part is None:  # looking for the next part's delimiter and headers
            i = buf.find(dash, pos)
            head_end = buf.find(b"\r\n\r\n", i) if i >= 0 else -1
            if i >= 0 and buf[i + len(dash):i + len(dash) + 2] == b"--":
                while (chunk := await _next(chunks)) is not None:  # the closing delimiter: an epilogue
                    buf += chunk  # (a line break, usually) is all that may follow
                    if len(buf) > limit:
                        raise PayloadTooLargeError(f"Request body exceeds the limit of {limit} bytes.")
                ended = True
                break
            if head_end >= 0:
                name, is_file = _disposition(bytes(buf[i + len(dash):head_end]))
                part, pos = (name, is_file, head_end + 4), head_end + 4
                if is_file and routable:
                    stop = pos  # a file begins: the rest streams through
                    break
                continue
            if i >= 0 and len(buf) - i > _HEADERS_MAX:
                raise InvalidRequestError("A part of the multipart/form-data body has unreadable headers.")
        else:
            name, is_file, start = part
            end = buf.find(next_part, pos)
            # The field's length so far (a delimiter cut by the end of this read not counted).
            if not is_file and (end if end >= 0 else len(buf) - len(next_part) + 1) - start > _FIELD_MAX:
                if name == "model":  # read whole or refused: never cut, never passed on unread
                    raise InvalidRequestError(LONG, param="model", code="string_above_max_length")
                if end < 0 and routable:
                    stop = start  # a long text field (a prompt): streamed on like a file
                    break
            if end >= 0:
                if name == "model" and not is_file:
                    if named:
                        raise InvalidRequestError(TWICE, param="model", code="duplicate_key")
                    named, model_at = True, (start, end)
                if not is_file and name is not None and end - start <= _FIELD_MAX:
                    fields.setdefault(name, buf[start:end].decode("utf-8", "replace"))
                part, pos = None, end + 2
                if end > _HEAD_MAX and (model_at is not None or not model_may_follow):
                    stop = end  # many short fields: the rest streams through from the next delimiter
                    break
                continue
            pos = max(start, len(buf) - len(next_part))  # the delimiter may straddle two reads
        if ended:
            break
        chunk = await _next(chunks)
        if chunk is None:
            ended = True
            continue
        buf += chunk
        if len(buf) > limit:
            raise PayloadTooLargeError(f"Request body exceeds the limit of {limit} bytes.")
    if not ended and request.content.at_eof():
        ended = True
    # What was read past the stop is watched before anything is sent (then the rest as it streams on).
    carry = _watch(bytes(buf[stop:]), next_part, TWICE if named else LATE) if stop is not None else b""
    return Form(fields, bytes(buf), None if ended else chunks, model_at, limit, next_part, named, carry)


async def _next(chunks: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None
    except web.RequestPayloadError:  # a broken chunked framing
        raise InvalidRequestError("The request body could not be read.", code="unreadable_body") from None

