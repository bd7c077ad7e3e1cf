/* The Evaluations panel (runs of `llm-gateway eval run`): a section of its own, fed by
 * /admin/dashboard/evaluations with the page's range and model filter (read from the URL's
 * #fragment, where the page keeps them), reloaded when the controls change. */
(function () {
  "use strict";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function num(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }
  function usd(v) { return v === null || v === undefined ? "–" : "$" + Number(v).toFixed(v < 1 ? 6 : 2); }
  function time(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–"; }

  var section = el("section", "panel");
  section.id = "p-evaluations";
  section.dataset.state = "loading";
  var title = el("h2", null, "Evaluations ");
  title.append(el("small", null, "llm-gateway eval run · mean (n) per scorer; intervals and tests: eval compare"));
  var msg = el("div", "msg");
  var box = el("div", "table");
  section.append(title, msg, box);
  document.querySelector("main").append(section);

  function params() {
    var hash = new URLSearchParams(location.hash.slice(1));
    var qs = new URLSearchParams();
    qs.set("range", hash.get("range") || "1h");
    if (hash.get("model")) qs.set("model", hash.get("model"));
    return qs.toString();
  }

  function render(runs) {
    box.textContent = "";
    var columns = ["run", "started", "status", "dataset", "candidate", "items", "failed", "cost", "p50 ms", "p95 ms", "scores"];
    var numeric = { items: 1, failed: 1, cost: 1, "p50 ms": 1, "p95 ms": 1 };
    var head = el("tr");
    columns.forEach(function (c) { head.append(el("th", numeric[c] ? "n" : "", c)); });
    var body = el("tbody");
    runs.forEach(function (run) {
      run.results.forEach(function (r, i) {
        var scores = Object.keys(r.scores).map(function (s) {
          var v = r.scores[s];
          return s + " " + num(v.mean, 3) + " (" + v.n + (v.unscored ? ", " + v.unscored + " unscored" : "") + ")";
        }).join(" · ");
        var cells = [i ? "" : run.run_id, i ? "" : time(run.started_ms), i ? "" : run.status, i ? "" : run.dataset,
                     r.candidate, r.items, r.failed_calls, usd(r.cost_usd), num(r.p50_ms, 1), num(r.p95_ms, 1), scores];
        var tr = el("tr");
        cells.forEach(function (v, j) { tr.append(el("td", numeric[columns[j]] ? "n" : "", v === "" ? "" : v)); });
        body.append(tr);
      });
    });
    var table = el("table");
    var thead = el("thead");
    thead.append(head);
    table.append(thead, body);
    box.append(table);
  }

  function load() {
    fetch("/admin/dashboard/evaluations?" + params(), { headers: { "X-Dashboard": "1", "Accept": "application/json" },
                                                         credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        return resp.json().catch(function () { return null; }).then(function (body) {
          if (!resp.ok) throw new Error(body && body.error ? body.error.message : "HTTP " + resp.status);
          return body;
        });
      })
      .then(function (d) {
        render(d.runs);
        section.dataset.state = d.runs.length ? "ok" : "empty";
        msg.textContent = d.runs.length ? "" : "No evaluation runs in this range.";
      }, function (err) {
        box.textContent = "";
        section.dataset.state = "error";
        msg.textContent = err.message;
      });
  }

  // After the page's own handlers have put the new range and filters in the URL.
  function later() { setTimeout(load, 0); }
  document.getElementById("controls").addEventListener("change", later);
  document.getElementById("reload").addEventListener("click", later);
  window.addEventListener("hashchange", later);
  load();
})();
