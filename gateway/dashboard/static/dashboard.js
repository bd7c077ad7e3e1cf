/* llm-gateway ops dashboard. Plain JS, no build step; charts by uPlot (vendored, inlined).
 * State (range, filters, refresh, open request) lives in the URL's #fragment, so a view can be
 * bookmarked and shared. Every panel reads /admin/dashboard/* with the same range and filters;
 * the session cookie authorises those requests together with the X-Dashboard header. */
(function () {
  "use strict";

  var FILTERS = ["tenant", "model", "backend", "prompt"];
  var state = { range: "1h", tenant: "", model: "", backend: "", prompt: "", refresh: "30" };
  var COLORS = ["#60a5fa", "#f59e0b", "#34d399", "#f472b6", "#a78bfa", "#22d3ee", "#facc15", "#fb7185"];
  var DASH = { p50: [], p95: [6, 4], p99: [2, 3] };
  var AXIS = { stroke: "#8b98a5", grid: { stroke: "#263240", width: 1 }, ticks: { stroke: "#263240", width: 1 } };
  var charts = [];
  var timer = null;
  var loading = false;
  var again = false;
  var generation = 0;

  // --- helpers ------------------------------------------------------------------------------
  function $(sel, root) { return (root || document).querySelector(sel); }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") node.textContent = v;
        else if (k === "cls") node.className = v;
        else if (k === "style") Object.keys(v).forEach(function (s) { node.style[s] = v[s]; });
        else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  var compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
  var fmt = {
    num: function (v) { return v === null || v === undefined ? "–" : (Math.abs(v) >= 10000 ? compact.format(v) : String(Math.round(v * 100) / 100)); },
    int: function (v) { return v === null || v === undefined ? "–" : (Math.abs(v) >= 100000 ? compact.format(v) : Math.round(v).toLocaleString("en")); },
    ms: function (v) {
      if (v === null || v === undefined) return "–";
      if (v >= 10000) return (v / 1000).toFixed(1) + " s";
      if (v >= 1000) return (v / 1000).toFixed(2) + " s";
      return (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
    },
    pct: function (r) { return r === null || r === undefined ? "–" : (r * 100).toFixed(r !== 0 && Math.abs(r) < 0.1 ? 2 : 1) + "%"; },
    usd: function (v) { return v === null || v === undefined ? "–" : "$" + (v === 0 ? "0" : v < 1 ? v.toFixed(4) : v.toFixed(2)); },
    rps: function (v) { return v === null || v === undefined ? "–" : (v < 1 ? v.toFixed(3) : v < 100 ? v.toFixed(2) : Math.round(v)); },
    time: function (ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–"; },
    dur: function (ms) {
      if (!ms) return "0 s";
      var s = ms / 1000;
      if (s < 120) return s.toFixed(1) + " s";
      if (s < 7200) return (s / 60).toFixed(1) + " min";
      if (s < 172800) return +(s / 3600).toFixed(1) + " h";
      return +(s / 86400).toFixed(1) + " days";
    }
  };

  function setPanel(id, stateName, message) {
    var p = document.getElementById(id);
    p.dataset.state = stateName;
    $(".msg", p).textContent = message || "";
    return p;
  }

  function query(extra) {
    var qs = new URLSearchParams();
    qs.set("range", state.range);
    FILTERS.forEach(function (f) { if (state[f]) qs.set(f, state[f]); });
    Object.keys(extra || {}).forEach(function (k) { qs.set(k, extra[k]); });
    return qs.toString();
  }

  function getJSON(url, optional) {
    return fetch(url, { headers: { "X-Dashboard": "1", "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401 && document.body.dataset.auth === "cookie") { location.reload(); }
        if (optional && resp.status === 404) return null;
        return resp.json().catch(function () { return null; }).then(function (body) {
          if (!resp.ok) {
            var msg = body && body.error && body.error.message ? body.error.message : "HTTP " + resp.status;
            throw new Error(msg);
          }
          return body;
        });
      });
  }

  function api(name, extra) { return getJSON("/admin/dashboard/" + name + "?" + query(extra)); }

  // --- URL state ------------------------------------------------------------------------------
  function readHash() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ""));
    Object.keys(state).forEach(function (k) { if (p.has(k)) state[k] = p.get(k); });
    return { req: p.get("req"), ts: p.get("ts") };
  }

  function writeHash(req, ts) {
    var p = new URLSearchParams();
    Object.keys(state).forEach(function (k) { if (state[k]) p.set(k, state[k]); });
    if (req) { p.set("req", req); if (ts) p.set("ts", ts); }
    history.replaceState(null, "", "#" + p.toString());
  }

  // --- charts -----------------------------------------------------------------------------------
  function tzDate(ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); }

  function makeChart(container, opts, data, height) {
    if (container._chart) { container._chart.destroy(); charts = charts.filter(function (c) { return c !== container._chart; }); }
    container.textContent = "";
    opts.width = Math.max(container.clientWidth, 240);
    opts.height = height || 210;
    opts.legend = opts.legend || { live: true };
    var u = new uPlot(opts, data, container);
    container._chart = u;
    u._container = container;
    charts.push(u);
    return u;
  }

  // UTC, 24-hour clock: [tick increment, format, format when the year / month-or-day changes, ...]
  var TIME_STAMPS = [
    [86400 * 365, "{YYYY}", null, null, null, null, null, null, 1],
    [86400 * 28, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [86400, "{MM}-{DD}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [60, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [1, "{HH}:{mm}:{ss}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1]
  ];
  var X_SERIES = { label: "UTC", value: "{YYYY}-{MM}-{DD} {HH}:{mm}" };

  function timeAxis() { return Object.assign({ space: 60, values: TIME_STAMPS }, AXIS); }

  function valueAxis(format, side, scale) {
    return Object.assign({}, AXIS, {
      scale: scale, side: side === undefined ? 3 : side, size: 58,
      values: function (u, vals) { return vals.map(format); },
      grid: side === 1 ? { show: false } : AXIS.grid
    });
  }

  window.addEventListener("resize", function () {
    charts.forEach(function (u) { u.setSize({ width: Math.max(u._container.clientWidth, 240), height: u.height }); });
  });

  // --- panels --------------------------------------------------------------------------------------
  function tile(label, value, cls) {
    return el("div", { cls: "tile" }, el("div", { cls: "k", text: label }), el("div", { cls: "v " + (cls || ""), text: value }));
  }

  function loadSummary() {
    return Promise.all([api("summary"), api("cache"), getJSON("/admin/telemetry", true).catch(function () { return null; })])
      .then(function (res) {
        var s = res[0], c = res[1], t = res[2];
        var box = $("#tiles");
        box.textContent = "";
        box.append(
          tile("Requests", fmt.int(s.requests)),
          tile("Requests/s", fmt.rps(s.rps)),
          // clients' mistakes and refusals (4xx) apart from failures of the backends (5xx, timeouts)
          tile("Client errors (4xx)", fmt.pct(s.client_error_rate), s.client_error_rate > 0.05 ? "bad" : ""),
          tile("Backend errors (5xx)", fmt.pct(s.backend_error_rate), s.backend_error_rate > 0.01 ? "bad" : ""),
          // latency and TTFT over the same requests: the successful ones
          tile("Latency p50 (ok)", fmt.ms(s.latency_ms.p50)),
          tile("Latency p95 (ok)", fmt.ms(s.latency_ms.p95)),
          tile("Latency p99 (ok)", fmt.ms(s.latency_ms.p99)),
          tile("TTFT p50 (ok)", fmt.ms(s.ttft_ms.p50)),
          tile("Tokens in", fmt.int(s.prompt_tokens)),
          tile("Tokens out", fmt.int(s.completion_tokens)),
          tile("Cost", fmt.usd(s.cost_usd)),
          tile("Cache hit ratio", fmt.pct(c.hit_ratio)),
          tile("Time saved", fmt.dur(c.saved_ms))
        );
        if (t && t.enabled !== undefined) {
          box.append(tile("Telemetry", t.enabled ? (t.store || "?") + (t.spool_rows ? " · " + fmt.int(t.spool_rows) + " spooled" : "") : "off",
            t.enabled && t.store === "up" ? "ok" : (t.enabled ? "bad" : "")));
        }
        setPanel("p-summary", s.requests ? "ok" : "empty", s.requests ? "" : "No requests in this range.");
      });
  }

  function loadTraffic() {
    return api("timeseries").then(function (d) {
      var traffic = document.getElementById("p-traffic");
      $(".src", traffic).textContent = "from " + (d.source === "rollup" ? "the 1-minute rollup" : "raw rows") + ", " + d.step_s + " s buckets";
      var any = d.requests.some(function (x) { return x > 0; });
      setPanel("p-traffic", any ? "ok" : "empty", any ? "" : "No requests in this range.");
      makeChart($(".chart", traffic), {
        tzDate: tzDate,
        scales: { x: { time: true }, rps: { auto: true, range: function (u, mn, mx) { return [0, Math.max(mx, 0.01) * 1.1]; } },
                  err: { auto: true, range: function (u, mn, mx) { return [0, Math.max(mx || 0, 0.01) * 1.1]; } } },
        series: [X_SERIES, { label: "requests/s", scale: "rps", stroke: COLORS[0], fill: "rgba(96,165,250,0.12)", width: 1.5, value: function (u, v) { return fmt.rps(v); } },
                 { label: "error rate", scale: "err", stroke: "#f87171", width: 1.5, value: function (u, v) { return fmt.pct(v); } }],
        axes: [timeAxis(), valueAxis(function (v) { return fmt.rps(v); }, 3, "rps"), valueAxis(function (v) { return (v * 100).toFixed(v < 0.1 ? 1 : 0) + "%"; }, 1, "err")]
      }, [d.t, d.rps, d.error_rate]);
      renderPercentiles("p-latency", d, "latency");
      renderPercentiles("p-ttft", d, "ttft");
    }, function (err) {
      ["p-traffic", "p-latency", "p-ttft"].forEach(function (id) { setPanel(id, "error", err.message); });
    });
  }

  function renderPercentiles(id, d, kind) {
    var panel = document.getElementById(id);
    var series = [X_SERIES], data = [d.t];
    d.model_order.forEach(function (model, i) {
      ["p50", "p95", "p99"].forEach(function (p) {
        var values = d.models[model][kind][p];
        series.push({ label: model + " " + p, stroke: COLORS[i % COLORS.length], dash: DASH[p], width: p === "p50" ? 1.8 : 1.2,
                      spanGaps: false, value: function (u, v) { return fmt.ms(v); } });
        data.push(values);
      });
    });
    var has = data.slice(1).some(function (vals) { return vals.some(function (v) { return v !== null; }); });
    setPanel(id, has ? "ok" : "empty", has ? "" : (kind === "ttft" ? "No first-token timings in this range." : "No requests in this range."));
    makeChart($(".chart", panel), {
      tzDate: tzDate, scales: { x: { time: true }, y: { range: function (u, mn, mx) { return [0, Math.max(mx || 0, 1) * 1.1]; } } },
      series: series, axes: [timeAxis(), valueAxis(function (v) { return fmt.ms(v); })]
    }, data);
  }

  function loadCache() {
    return api("cache").then(function (c) {
      var panel = document.getElementById("p-cache");
      var kv = $("#cache-kv");
      kv.textContent = "";
      [["hit ratio", fmt.pct(c.hit_ratio)], ["hits", fmt.int(c.hits)], ["semantic hits", fmt.int(c.semantic_hits)],
       ["misses", fmt.int(c.misses)],
       ["coalesced", fmt.int(c.coalesced)], ["bypassed", fmt.int(c.bypassed)],
       ["refused before the cache", fmt.int(c.not_reached)], ["time saved", fmt.dur(c.saved_ms)]]
        .forEach(function (p) { kv.append(el("span", null, p[0] + " ", el("b", { text: p[1] }))); });
      var any = c.hit_ratio_series.some(function (v) { return v !== null; });
      setPanel("p-cache", c.requests ? "ok" : "empty", c.requests ? (any ? "" : "No cache lookups in this range (cache off or bypassed).") : "No requests in this range.");
      makeChart($(".chart", panel), {
        tzDate: tzDate, scales: { x: { time: true }, y: { range: [0, 1] } },
        series: [X_SERIES, { label: "hit ratio", stroke: COLORS[2], fill: "rgba(52,211,153,0.12)", width: 1.5, value: function (u, v) { return fmt.pct(v); } }],
        axes: [timeAxis(), valueAxis(function (v) { return Math.round(v * 100) + "%"; })]
      }, [c.t, c.hit_ratio_series], 150);
    }, function (err) { setPanel("p-cache", "error", err.message); });
  }

  function table(columns, rows) {
    var head = el("tr");
    columns.forEach(function (c) { head.append(el("th", { cls: c.n ? "n" : "", text: c.label })); });
    var body = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr");
      columns.forEach(function (c) {
        var v = c.render ? c.render(r) : (c.fmt ? c.fmt(r[c.key], r) : r[c.key]);
        var td = el("td", { cls: (c.n ? "n " : "") + (c.cls || "") });
        if (v instanceof Node) td.append(v); else td.textContent = v === null || v === undefined || v === "" ? "–" : String(v);
        tr.append(td);
      });
      body.append(tr);
    });
    return el("table", null, el("thead", null, head), body);
  }

  function withBar(text, value, max) {
    var span = el("span", null, text);
    if (max > 0 && value > 0) span.append(el("span", { cls: "bar", style: { width: Math.max(2, Math.round(60 * value / max)) + "px" } }));
    return span;
  }

  function usageTable(id, rows, label) {
    var panel = document.getElementById(id);
    var box = $(".table", panel);
    box.textContent = "";
    setPanel(id, rows.length ? "ok" : "empty", rows.length ? "" : "No requests in this range.");
    if (!rows.length) return;
    var maxCost = Math.max.apply(null, rows.map(function (r) { return r.cost_usd || 0; }));
    var maxTok = Math.max.apply(null, rows.map(function (r) { return r.prompt_tokens + r.completion_tokens; }));
    box.append(table([
      { label: label, render: function (r) { return r.name || "(none)"; } },
      { label: "requests", key: "requests", n: true, fmt: fmt.int },
      { label: "tokens in", key: "prompt_tokens", n: true, fmt: fmt.int },
      { label: "tokens out", key: "completion_tokens", n: true, fmt: fmt.int },
      { label: "tokens", n: true, render: function (r) { var t = r.prompt_tokens + r.completion_tokens; return withBar(fmt.int(t), t, maxTok); } },
      { label: "cost", n: true, render: function (r) { return withBar(fmt.usd(r.cost_usd), r.cost_usd, maxCost); } }
    ], rows));
  }

  function loadUsage() {
    return api("usage").then(function (u) {
      usageTable("p-usage-tenant", u.by_tenant, "tenant");
      usageTable("p-usage-model", u.by_model, "model");
    }, function (err) { ["p-usage-tenant", "p-usage-model"].forEach(function (id) { setPanel(id, "error", err.message); }); });
  }

  function findLoad(obj) {
    // vLLM load figures wherever a backend entry carries them (snapshot/load objects or flat fields).
    if (!obj || typeof obj !== "object") return null;
    var cands = [obj.snapshot, obj.load, obj.vllm, obj];
    for (var i = 0; i < cands.length; i++) {
      var c = cands[i];
      if (c && typeof c === "object" && (c.waiting !== undefined || c.kv_cache !== undefined)) return c;
    }
    return null;
  }

  function liveState() {
    // /admin/backends always; /admin/vllm (scrape state, queue, KV cache) only when a vLLM backend exists
    return getJSON("/admin/backends", true).catch(function () { return null; }).then(function (live) {
      var hasVllm = live && (live.backends || []).some(function (b) { return b.type === "vllm"; });
      if (!hasVllm) return [live, null];
      return getJSON("/admin/vllm", true).catch(function () { return null; }).then(function (v) { return [live, v]; });
    });
  }

  function loadBackends() {
    return Promise.all([api("backends"), liveState()])
      .then(function (res) {
        res = [res[0], res[1][0], res[1][1]];
        var stats = res[0], live = res[1] || { backends: [], targets: [] }, vllm = res[2];
        var rows = {};
        function row(name) { return rows[name] || (rows[name] = { backend: name, type: "", targets: [], stats: null, load: null, scrape: null }); }
        (live.backends || []).forEach(function (b) { row(b.name).type = b.type; });
        (live.targets || []).forEach(function (t) { row(t.backend).targets.push(t); var l = findLoad(t); if (l) row(t.backend).load = l; });
        (vllm && vllm.backends || []).forEach(function (v) { var r = row(v.backend); r.scrape = v.state; var l = findLoad(v); if (l) r.load = l; });
        stats.backends.forEach(function (s) { row(s.backend).stats = s; });
        var list = Object.keys(rows).filter(function (n) { return n && (!state.backend || n === state.backend); }).sort()
          .map(function (n) { return rows[n]; });
        var box = $(".table", document.getElementById("p-backends"));
        box.textContent = "";
        setPanel("p-backends", list.length ? "ok" : "empty", list.length ? "" : "No backends.");
        if (!list.length) return;
        box.append(table([
          { label: "backend", key: "backend" },
          { label: "type", key: "type" },
          { label: "circuit", render: function (r) {
              var span = el("span");
              // live state starts empty at each start: only a backend without rows has had no traffic
              if (!r.targets.length) span.append(el("span", { cls: "muted", text: r.stats && r.stats.requests ? "idle since start" : "no traffic since start" }));
              r.targets.forEach(function (t) {
                var model = (t.target || "").split("/").slice(1).join("/");
                span.append(el("span", { cls: "badge " + t.circuit, title: t.target, text: (model ? model + ": " : "") + t.circuit }));
              });
              if (r.scrape) span.append(el("span", { cls: "badge " + r.scrape, text: "metrics " + r.scrape }));
              return span;
            } },
          { label: "in flight", n: true, render: function (r) { return r.targets.length ? fmt.int(r.targets.reduce(function (a, t) { return a + (t.inflight || 0); }, 0)) : "–"; } },
          { label: "EWMA latency", n: true, render: function (r) {
              var v = r.targets.map(function (t) { return t.ewma_latency_ms; }).filter(function (x) { return x !== null && x !== undefined; });
              return v.length ? fmt.ms(Math.min.apply(null, v)) : "–";
            } },
          { label: "vLLM running / waiting", n: true, render: function (r) { return r.load ? fmt.num(r.load.running) + " / " + fmt.num(r.load.waiting) : "–"; } },
          { label: "KV cache", n: true, render: function (r) { return r.load && r.load.kv_cache !== undefined && r.load.kv_cache !== null ? fmt.pct(r.load.kv_cache) : "–"; } },
          { label: "requests", n: true, render: function (r) { return r.stats ? fmt.int(r.stats.requests) : "0"; } },
          { label: "error rate", n: true, render: function (r) { return r.stats ? fmt.pct(r.stats.error_rate) : "–"; } },
          { label: "p95", n: true, render: function (r) { return r.stats ? fmt.ms(r.stats.p95_ms) : "–"; } },
          { label: "attempts (failed)", n: true, render: function (r) { return r.stats ? fmt.int(r.stats.attempts) + " (" + fmt.int(r.stats.failed_attempts) + ")" : "–"; } }
        ], list));
      }, function (err) { setPanel("p-backends", "error", err.message); });
  }

  function requestLink(r) {
    return el("a", { href: "#", title: r.request_id, onclick: function (ev) { ev.preventDefault(); openDetail(r.request_id, r.ts); } },
      (r.client_request_id || r.request_id).slice(0, 13));
  }

  function loadRequests(kind, id) {
    return api("requests", { kind: kind, limit: 15 }).then(function (d) {
      var box = $(".table", document.getElementById(id));
      box.textContent = "";
      setPanel(id, d.requests.length ? "ok" : "empty", d.requests.length ? "" : (kind === "failed" ? "No failed requests in this range." : "No requests in this range."));
      if (!d.requests.length) return;
      var cols = [
        { label: "request", render: requestLink },
        { label: "time (UTC)", key: "ts", fmt: function (v) { return fmt.time(v).slice(5); } },
        { label: "model", key: "model" },
        { label: "backend", key: "backend" },
        { label: "tenant", key: "tenant" },
        { label: "status", n: true, render: function (r) { return el("span", { cls: r.status_code >= 400 ? "status-bad" : "", text: String(r.status_code) }); } }
      ];
      if (kind === "slowest") {
        cols.push({ label: "latency", key: "latency_ms", n: true, fmt: fmt.ms }, { label: "TTFT", key: "ttft_ms", n: true, fmt: fmt.ms },
                  { label: "tokens in/out", n: true, render: function (r) { return fmt.int(r.prompt_tokens) + " / " + fmt.int(r.completion_tokens); } });
      } else {
        cols.push({ label: "error", cls: "wrap", render: function (r) { return (r.error_type || "") + (r.error_message ? ": " + r.error_message.slice(0, 120) : ""); } });
      }
      box.append(table(cols, d.requests));
    }, function (err) { setPanel(id, "error", err.message); });
  }

  function loadAdapters() {
    return api("adapters").then(function (d) {
      var box = $(".table", document.getElementById("p-adapters"));
      box.textContent = "";
      setPanel("p-adapters", d.arms.length ? "ok" : "empty", d.arms.length ? "" : "No requests answered by a LoRA adapter in this range.");
      if (!d.arms.length) return;
      box.append(table([
        { label: "model", key: "model" }, { label: "arm", key: "arm" },
        { label: "requests", key: "requests", n: true, fmt: fmt.int },
        { label: "error rate", key: "error_rate", n: true, fmt: fmt.pct },
        { label: "p50", key: "p50_ms", n: true, fmt: fmt.ms }, { label: "p95", key: "p95_ms", n: true, fmt: fmt.ms },
        { label: "mean tokens in", key: "mean_prompt_tokens", n: true, fmt: fmt.num },
        { label: "mean tokens out", key: "mean_completion_tokens", n: true, fmt: fmt.num },
        { label: "cost", key: "cost_usd", n: true, fmt: fmt.usd },
        { label: "feedback", key: "feedback", n: true, fmt: fmt.int },
        { label: "mean score", key: "mean_score", n: true, fmt: function (v) { return v === null ? "–" : v.toFixed(3); } }
      ], d.arms));
    }, function (err) { setPanel("p-adapters", "error", err.message); });
  }

  function loadPrompts() {
    return api("prompts").then(function (d) {
      var box = $(".table", document.getElementById("p-prompts"));
      box.textContent = "";
      setPanel("p-prompts", d.versions.length ? "ok" : "empty", d.versions.length ? "" : "No requests with versioned prompts in this range.");
      if (!d.versions.length) return;
      box.append(table([
        { label: "prompt", key: "prompt" }, { label: "version", key: "version", n: true },
        { label: "labels", render: function (r) { return r.labels.join(", ") || "–"; } },
        { label: "requests", key: "requests", n: true, fmt: fmt.int },
        { label: "error rate", key: "error_rate", n: true, fmt: fmt.pct },
        { label: "p50", key: "p50_ms", n: true, fmt: fmt.ms }, { label: "p95", key: "p95_ms", n: true, fmt: fmt.ms },
        { label: "mean tokens in", key: "mean_prompt_tokens", n: true, fmt: fmt.num },
        { label: "mean tokens out", key: "mean_completion_tokens", n: true, fmt: fmt.num },
        { label: "cost", key: "cost_usd", n: true, fmt: fmt.usd },
        { label: "feedback", key: "feedback", n: true, fmt: fmt.int },
        { label: "mean score", key: "mean_score", n: true, fmt: function (v) { return v === null ? "–" : v.toFixed(3); } }
      ], d.versions));
    }, function (err) { setPanel("p-prompts", "error", err.message); });
  }

  function badge(level) { return el("span", { cls: "badge " + level, text: level === "drift" ? "DRIFT" : level }); }

  function driftCell(c, side) {
    if (c.kind === "psi" && c.name !== "finish_reason") return "p50 " + fmt.num(c[side + "_p50"]) + " (n=" + fmt.int(c[side + "_n"]) + ")";
    if (c.name === "finish_reason") {
      var top = c.categories.slice().sort(function (a, b) { return Math.abs(b.current - b.reference) - Math.abs(a.current - a.reference); }).slice(0, 2);
      return top.map(function (x) { return x.category + " " + fmt.pct(x[side]); }).join(", ") || "–";
    }
    if (c.name === "error_rate") return c[side] === null ? "–" : fmt.pct(c[side]) + " (" + fmt.int(c[side + "_errors"]) + "/" + fmt.int(c[side + "_n"]) + ")";
    return c[side] === null ? "–" : c[side].toFixed(3) + " (n=" + fmt.int(c[side + "_n"]) + ")";
  }

  function loadDrift() {
    return api("drift").then(function (d) {
      var panel = document.getElementById("p-drift");
      var scope = FILTERS.filter(function (f) { return state[f]; }).map(function (f) { return f + "=" + state[f]; }).join(", ");
      $("#drift-scope").textContent = (scope || "all traffic") + " · last " + fmt.dur(d.windows.current.to - d.windows.current.from) +
        " (" + fmt.int(d.windows.current.requests) + " req) vs the " + fmt.dur(d.windows.reference.to - d.windows.reference.from) +
        " before (" + fmt.int(d.windows.reference.requests) + " req)";
      var lvl = $("#drift-level");
      lvl.className = "badge " + d.level;
      lvl.textContent = d.flagged ? "DRIFT" : d.level;
      var box = $(".table", panel);
      box.textContent = "";
      box.append(table([
        { label: "check", key: "name" },
        { label: "reference (7 d)", render: function (c) { return driftCell(c, "reference"); } },
        { label: "current (24 h)", render: function (c) { return driftCell(c, "current"); } },
        { label: "statistic", n: true, render: function (c) {
            if (c.value === null) return "–";
            return (c.kind === "psi" ? "PSI " + Number(c.value).toFixed(3) : "z " + c.value);
          } },
        { label: "level", render: function (c) { return badge(c.level); } },
        { label: "detail", cls: "wrap", key: "detail" }
      ], d.checks));
      var hists = $("#drift-hists");
      hists.textContent = "";
      d.checks.forEach(function (c) {
        if (!c.histogram) return;
        var box2 = el("div", { cls: "hist" }, el("h3", null, c.name + " ", el("small", { text: "share per bin (reference deciles) · PSI " + c.value.toFixed(3) })),
                      el("div", { cls: "chart" }));
        hists.append(box2);
        histogram($(".chart", box2), c.histogram);
      });
      var mix = $("#drift-mix");
      mix.textContent = "";
      var fr = d.checks.filter(function (c) { return c.name === "finish_reason"; })[0];
      if (fr && fr.categories.length) {
        mix.append(el("h3", { cls: "muted", text: "Finish-reason mix (grey: reference, amber: current)" }),
          table([{ label: "finish reason", key: "category" },
                 { label: "reference", n: true, render: function (x) { return el("span", null, fmt.pct(x.reference), el("span", { cls: "mixbar ref", style: { width: Math.round(120 * x.reference) + "px", marginLeft: "6px" } })); } },
                 { label: "current", n: true, render: function (x) { return el("span", null, fmt.pct(x.current), el("span", { cls: "mixbar cur", style: { width: Math.round(120 * x.current) + "px", marginLeft: "6px" } })); } }],
                fr.categories));
      }
      var anyData = d.windows.reference.requests + d.windows.current.requests > 0;
      setPanel("p-drift", anyData ? "ok" : "empty", anyData ? "" : "No requests in the last 8 days for these filters.");
    }, function (err) { setPanel("p-drift", "error", err.message); });
  }

  function histogram(container, h) {
    var xs = h.reference.map(function (_, i) { return i; });
    var bars = uPlot.paths.bars;
    makeChart(container, {
      scales: { x: { time: false, range: function () { return [-0.5, xs.length - 0.5]; } }, y: { range: function (u, mn, mx) { return [0, Math.max(mx, 0.01) * 1.15]; } } },
      series: [{ label: "bin", value: function (u, v) { return v === null ? "" : h.labels[v]; } },
               { label: "reference", stroke: "#94a3b8", fill: "rgba(148,163,184,0.45)", paths: bars({ size: [0.42, 60], align: -1 }), points: { show: false }, value: function (u, v) { return fmt.pct(v); } },
               { label: "current", stroke: "#fbbf24", fill: "rgba(251,191,36,0.55)", paths: bars({ size: [0.42, 60], align: 1 }), points: { show: false }, value: function (u, v) { return fmt.pct(v); } }],
      axes: [Object.assign({}, AXIS, { space: 10, size: 44, rotate: -35, font: "10px system-ui", grid: { show: false },
                                      splits: function () { return xs; }, values: function (u, vals) { return vals.map(function (v) { return h.labels[v] || ""; }); } }),
             valueAxis(function (v) { return Math.round(v * 100) + "%"; })]
    }, [xs, h.reference, h.current], 190);
  }

  function loadOptions() {
    return api("options").then(function (o) {
      var lists = { tenant: o.tenants, model: o.models, backend: o.backends, prompt: [] };
      o.prompts.forEach(function (p) {
        lists.prompt.push(p.prompt);
        p.versions.forEach(function (v) { lists.prompt.push(p.prompt + "@" + v); });
      });
      FILTERS.forEach(function (f) {
        var sel = $("#controls select[name=" + f + "]");
        var values = lists[f].slice();
        if (state[f] && values.indexOf(state[f]) < 0) values.push(state[f]);
        sel.textContent = "";
        sel.append(el("option", { value: "", text: "all" }));
        values.forEach(function (v) { sel.append(el("option", { value: v, text: v })); });
        sel.value = state[f];
      });
    }).catch(function () { /* the panels report store errors themselves */ });
  }

  // --- request details ------------------------------------------------------------------------------
  function openDetail(id, ts) {
    writeHash(id, ts);
    var dlg = document.getElementById("detail");
    $("#detail-id").textContent = id;
    var body = $("#detail-body");
    body.textContent = "loading…";
    if (!dlg.open) dlg.showModal();
    getJSON("/admin/dashboard/request/" + encodeURIComponent(id) + (ts ? "?ts=" + encodeURIComponent(ts) : "")).then(function (d) {
      body.textContent = "";
      var r = d.request;
      var cols = el("div", { cls: "cols" });
      Object.keys(r).forEach(function (k) {
        if (k === "request_body" || k === "response_body" || k === "ts") return;
        var v = r[k];
        if (v !== null && typeof v === "object") v = JSON.stringify(v);
        else if (typeof v === "number" && !Number.isInteger(v)) v = +v.toFixed(3);
        cols.append(el("div", null, el("span", { cls: "k", text: k }), el("span", { cls: "v mono", text: v === null || v === "" ? "–" : String(v) })));
      });
      body.append(cols);
      if (d.attempts.length) {
        body.append(el("h3", { text: "Upstream attempts" }), table([
          { label: "#", key: "attempt", n: true }, { label: "time (UTC)", key: "ts", fmt: fmt.time }, { label: "backend", key: "backend" },
          { label: "model", key: "model" }, { label: "status", key: "status_code", n: true }, { label: "error", key: "error_type" },
          { label: "latency", key: "latency_ms", n: true, fmt: fmt.ms }, { label: "TTFT", key: "ttft_ms", n: true, fmt: fmt.ms },
          { label: "backoff", key: "backoff_ms", n: true, fmt: fmt.ms }], d.attempts));
      }
      if (d.feedback.length) {
        body.append(el("h3", { text: "Feedback" }), table([
          { label: "time (UTC)", key: "ts", fmt: fmt.time }, { label: "score", key: "score", n: true }, { label: "label", key: "label" },
          { label: "comment", key: "comment", cls: "wrap" }], d.feedback));
      }
      ["request_body", "response_body"].forEach(function (k) {
        if (r[k]) body.append(el("h3", { text: k.replace("_", " ") }), el("pre", { text: r[k] }));
      });
    }, function (err) { body.textContent = err.message; });
  }

  document.getElementById("detail").addEventListener("close", function () { writeHash(); });

  // --- panels of other packages ----------------------------------------------------------------------
  // A panel script inlined before this one (api.py's PANEL_SCRIPTS) pushes its loader onto
  // window.gatewayPanels; each refresh calls it with the helpers it needs and waits for its promise.
  var kit = { $: $, el: el, fmt: fmt, api: api, table: table, setPanel: setPanel, badge: badge, refresh: function () { return refresh(); } };
  function extraPanels() {
    return (window.gatewayPanels || []).map(function (load) {
      try { return Promise.resolve(load(kit)); } catch (err) { return Promise.reject(err); }
    });
  }

  // --- refresh loop ----------------------------------------------------------------------------------
  function refresh() {
    if (loading) { again = true; return Promise.resolve(); }  // runs once more when this one ends
    loading = true;
    var gen = ++generation;
    clearTimeout(timer);
    document.body.dataset.ready = "0";
    return Promise.allSettled([loadOptions(), loadSummary().catch(function (err) { setPanel("p-summary", "error", err.message); }),
                               loadTraffic(), loadCache(), loadUsage(), loadBackends(),
                               loadRequests("slowest", "p-slowest"), loadRequests("failed", "p-failed"), loadPrompts(), loadAdapters(), loadDrift()]
                               .concat(extraPanels()))
      .then(function () {
        loading = false;
        if (again) { again = false; return refresh(); }
        $("#updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
        document.body.dataset.ready = "1";
        var every = parseInt(state.refresh, 10);
        if (every > 0 && gen === generation) timer = setTimeout(refresh, every * 1000);
      });
  }

  function onControl(ev) {
    var t = ev.target;
    if (!t.name) return;
    state[t.name] = t.value;
    writeHash();
    if (t.name === "refresh") {
      clearTimeout(timer);
      var every = parseInt(state.refresh, 10);
      if (every > 0) timer = setTimeout(refresh, every * 1000);
      return;
    }
    refresh();
  }

  var initial = readHash();
  Array.prototype.forEach.call(document.querySelectorAll("#controls select"), function (sel) {
    if (state[sel.name] && !Array.prototype.some.call(sel.options, function (o) { return o.value === state[sel.name]; })) {
      sel.append(el("option", { value: state[sel.name], text: state[sel.name] }));
    }
    sel.value = state[sel.name];
  });
  $("#controls").addEventListener("change", onControl);
  $("#reload").addEventListener("click", function () { refresh(); });
  refresh().then(function () { if (initial.req) openDetail(initial.req, initial.ts); });
})();
