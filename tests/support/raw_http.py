"""A raw-socket HTTP/1.1 client for tests that must send a request target exactly as written.

aiohttp's, httpx's and the OpenAI SDK's clients normalise URLs (``..`` segments, encodings)
before sending, so they cannot send a path attack; this one writes the request line itself.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self):
        return orjson.loads(self.body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return bytes(out)


def raw_request(base_url: str, method: str, target: str, body: bytes = b"",
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> RawResponse:
    """Send ``{method} {target} HTTP/1.1`` to the server at ``base_url`` (``http://host:port``)
    with ``body``, and read the whole answer (the connection is closed after it)."""
    parts = urlsplit(base_url)
    head = {"Host": parts.netloc, "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    request = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request.encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    got = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        got[name.strip().lower()] = value.strip()
    if got.get("transfer-encoding", "").lower() == "chunked":
        payload = _dechunk(payload)
    return RawResponse(status, got, payload)
