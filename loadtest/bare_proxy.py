"""The reference bare reverse proxy: aiohttp + uvloop, one hop, nothing else.

``python -m loadtest bare-proxy --port 9200 --upstream http://127.0.0.1:9100``

It is the floor for what any Python proxy hop costs, and the yardstick the gateway is held to
(throughput at least half of this, CPU per request at most twice this). It reads the request,
sends it to the upstream on one pooled ``ClientSession``, and relays the answer: a JSON body
whole, a stream as each read arrives. No parsing, no headers beyond Content-Type, no logging.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def _proxy(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + request.path_qs
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    async with session.request(request.method, url, data=body, headers=headers) as upstream:
        ctype = upstream.headers.get("Content-Type", "application/json")
        if ctype.startswith("text/event-stream"):
            response = web.StreamResponse(status=upstream.status, headers={"Content-Type": ctype})
            await response.prepare(request)
            async for data in upstream.content.iter_any():
                await response.write(data)
            await response.write_eof()
            return response
        return web.Response(status=upstream.status, body=await upstream.read(), headers={"Content-Type": ctype})


def build_bare_proxy(upstream: str) -> web.Application:
    """The proxy app forwarding every path to ``upstream`` (``http://HOST:PORT``)."""
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application):
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", _proxy)
    return app


def serve(host: str, port: int, upstream: str) -> None:
    """Serve in the foreground on uvloop until SIGTERM/SIGINT."""
    from loadtest.generator import run_async
    from loadtest.procs import serve_until_signal

    async def main() -> None:
        runner = web.AppRunner(build_bare_proxy(upstream), access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=2048)
        await site.start()
        print(f"bare proxy listening on http://{host}:{port} -> {upstream}", flush=True)
        await serve_until_signal()
        await runner.cleanup()

    run_async(main())
