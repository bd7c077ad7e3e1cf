/* The Bias panel (gateway/bias, GET /admin/dashboard/bias): per segment refusal rate, error
 * rate, feedback score, output tokens and latency with a disparity test each, or rater bias.
 * Inlined before dashboard.js, which calls the loader pushed here on every refresh. */
(function () {
  "use strict";
  var main = document.querySelector("main");
  var section = document.createElement("section");
  section.className = "panel";
  section.id = "p-bias";
  section.dataset.state = "loading";
  section.innerHTML =
    '<h2>Bias <small id="bias-scope"></small> <span id="bias-level" class="badge"></span></h2>' +
    '<form id="bias-controls" autocomplete="off">' +
    '<label>Segment by <input name="by" value="tenant" size="18" title="metadata.&lt;key&gt;, tenant, user, api_key_id, user_agent, experiment_arm, model, backend"></label> ' +
    '<label>Min. requests <input name="min_count" value="30" size="4" inputmode="numeric"></label> ' +
    '<label><input type="checkbox" name="raters"> raters</label> ' +
    '<button type="submit">Apply</button></form>' +
    '<div class="msg"></div><div class="table" id="bias-segments"></div><div class="table" id="bias-checks"></div>';
  main.append(section);
  var kitRef = null;
  section.querySelector("#bias-controls").addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (kitRef) load(kitRef);
  });

  function options() {
    var f = section.querySelector("#bias-controls");
    var extra = { by: f.by.value.trim() || (f.raters.checked ? "none" : "tenant"), min_count: f.min_count.value.trim() || "30" };
    if (f.raters.checked) extra.raters = "1";
    return extra;
  }

  function load(k) {
    kitRef = k;
    var fmt = k.fmt;
    return k.api("bias", options()).then(function (d) {
      var level = d.flagged ? "drift" : (d.insufficient_data ? "n/a" : "ok");
      var badge = section.querySelector("#bias-level");
      badge.className = "badge " + level;
      badge.textContent = d.flagged ? "DISPARITY" : (d.insufficient_data ? "n/a" : "ok");
      section.querySelector("#bias-scope").textContent = (d.kind === "raters" ? "raters" : "by " + d.by) +
        " · Holm-corrected, α " + d.thresholds.alpha;
      var top = section.querySelector("#bias-segments");
      top.textContent = "";
      var judged = function (r) { return r.judged ? "judged" : "not judged: " + r.reason; };
      if (d.kind === "raters") {
        top.append(k.table([
          { label: "rater", key: "rater" }, { label: "scores", key: "n", n: true, fmt: fmt.int },
          { label: "mean", key: "mean", n: true, fmt: fmt.num }, { label: "sd", key: "sd", n: true, fmt: fmt.num },
          { label: "by segment", render: function (r) { return Object.keys(r.segments || {}).map(function (s) { return s + " " + fmt.num(r.segments[s]); }).join(", "); } },
          { label: "", cls: "wrap", render: judged }
        ], d.raters));
      } else {
        top.append(k.table([
          { label: "segment", key: "segment" }, { label: "requests", key: "requests", n: true, fmt: fmt.int },
          { label: "refusals", key: "refusal_rate", n: true, fmt: fmt.pct }, { label: "errors", key: "error_rate", n: true, fmt: fmt.pct },
          { label: "feedback", n: true, render: function (r) { return fmt.num(r.feedback_score) + " (n=" + fmt.int(r.feedback_n) + ")"; } },
          { label: "output tokens", key: "output_tokens", n: true, fmt: fmt.num }, { label: "latency", key: "latency_ms", n: true, fmt: fmt.ms },
          { label: "", cls: "wrap", render: judged }
        ], d.segments));
      }
      var checks = section.querySelector("#bias-checks");
      checks.textContent = "";
      checks.append(k.table([
        { label: "check", key: "name" }, { label: "test", key: "test" },
        { label: "p (Holm)", n: true, render: function (c) { return c.p_adjusted === null ? "–" : Number(c.p_adjusted).toPrecision(3); } },
        { label: "effect", n: true, render: function (c) { return c.effect_size === null ? "–" : c.effect + " " + c.effect_size; } },
        { label: "level", render: function (c) {
            return c.level === "disparity" ? k.el("span", { cls: "badge drift", text: "DISPARITY" }) : k.badge(c.level);
          } },
        { label: "detail", cls: "wrap", key: "detail" }
      ], d.checks));
      var rows = d.kind === "raters" ? d.raters.length : d.segments.length;
      k.setPanel("p-bias", rows ? "ok" : "empty", rows ? "" : "No " + (d.kind === "raters" ? "rated feedback" : "segments") + " in this range.");
    }, function (err) { k.setPanel("p-bias", "error", err.message); });
  }

  window.gatewayPanels = (window.gatewayPanels || []).concat([load]);
})();
