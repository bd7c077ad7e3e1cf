"""llm-gateway's load test and benchmark tool.

Modules, one job each:

- ``scenario``: scenario YAML (model mix, stream ratio, sizes, repeats, rate steps) and the
  request factory built from it.
- ``httpclient``: a lean HTTP/1.1 keep-alive client on asyncio protocols (uvloop) that
  understands chunked SSE streams (first byte, last byte, chunk gaps, ``[DONE]``); an aiohttp
  engine with the same interface.
- ``generator``: closed-loop (fixed concurrency) and open-loop (Poisson arrivals, latency from
  the scheduled send time) runs, recorded into HDR histograms.
- ``stats``: HDR histogram helpers and percentile summaries.
- ``fake_upstream``: a fast fake OpenAI upstream (TTFT, chunk count, gaps).
- ``bare_proxy``: the reference bare aiohttp reverse proxy, the floor for one Python hop.
- ``procs``: starting servers pinned to cores, readiness, CPU time and RSS of a process tree.
- ``bench``: the interleaved benchmark (direct, bare proxy, gateway features off/on,
  an optional comparison URL) and its table.
- ``report``: one-line step summaries, the Markdown table and the met/missed checks.
- ``plot``: latency percentiles against offered load as a PNG.
- ``profile``: py-spy sampling of the gateway under load, folded into hot spots.
- ``cli``: ``python -m loadtest`` / ``llm-gateway-bench``.
"""

__version__ = "0.1.0"
