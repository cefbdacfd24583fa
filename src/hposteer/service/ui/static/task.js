// hposteer web UI: the task page. Polls the charts' JSON (ETag: an unchanged task costs a 304)
// and keeps the points table current; the summary above is a live HTML region (common.js).
"use strict";
(function () {
  document.addEventListener("DOMContentLoaded", () => {
    const taskId = document.body.dataset.task;
    const api = "/ui/api/tasks/" + taskId;
    const canvases = {
      history: document.getElementById("history"),
      parcoords: document.getElementById("parcoords"),
      steering: document.getElementById("steering"),
    };
    const last = {};
    const running = () => (document.querySelector("#live .summary") || {}).dataset?.state === "running";
    const pace = (ms) => () => (running() ? ms : Math.max(ms, 15000));
    // An ended task changes only when retried: its live region polls slowly too (common.js).
    const mark = () => { if (running()) delete document.body.dataset.slow; else document.body.dataset.slow = "1"; };
    mark();
    document.addEventListener("live:updated", mark);
    const segmentSelect = document.getElementById("segment");
    let segment = null;

    async function refresh(name, url, draw) {
      const result = await hp.poll(url, "json");
      if (!result.changed) return;
      last[name] = result.body;
      draw(result.body);
    }

    // The history chart's scale and outlier choice, remembered for every task (localStorage).
    const scalePick = document.getElementById("history-scale");
    const outliersPick = document.getElementById("history-outliers");
    const remembered = (key, fallback) => { try { return localStorage.getItem(key) ?? fallback; } catch (e) { return fallback; } };
    const remember = (key, value) => { try { localStorage.setItem(key, value); } catch (e) { /* private mode */ } };
    scalePick.value = remembered("hposteer.history.scale", "auto");
    outliersPick.checked = remembered("hposteer.history.outliers", "hide") === "show";
    const drawHistory = (d) => {
      const drawn = hpCharts.history(canvases.history, d, taskId, { scale: scalePick.value, showOutliers: outliersPick.checked });
      const logOption = scalePick.querySelector('option[value="log"]');
      logOption.disabled = !drawn.logAvailable;
      logOption.title = drawn.logAvailable ? "" : "a log scale needs every loss > 0";
      const parts = [d.sampled
        ? "an even sample of " + d.points.length.toLocaleString() + " of " + d.total.toLocaleString() + " points (and the latest); the best-so-far line is exact"
        : d.points.length.toLocaleString() + " finished points"];
      if (drawn.clipped) parts.push(drawn.clipped + " far outlier" + (drawn.clipped > 1 ? "s" : "") + " clipped");
      if (scalePick.value === "log" && drawn.scale !== "log") parts.push("linear: a loss ≤ 0 has no log");
      document.getElementById("history-note").textContent = parts.join(" · ");
    };
    scalePick.addEventListener("change", () => { remember("hposteer.history.scale", scalePick.value); if (last.history) drawHistory(last.history); });
    outliersPick.addEventListener("change", () => { remember("hposteer.history.outliers", outliersPick.checked ? "show" : "hide"); if (last.history) drawHistory(last.history); });
    const drawParcoords = (d) => {
      hpCharts.parcoords(canvases.parcoords, d, taskId);
      document.getElementById("parcoords-note").textContent = d.lines.length.toLocaleString() + " done points";
      if (d.segments.length > 1 && segmentSelect.options.length !== d.segments.length) {
        segmentSelect.replaceChildren(...d.segments.map((s) => hp.el("option", { value: String(s), text: String(s) })));
        segmentSelect.value = String(d.segment);
        document.getElementById("segment-pick").hidden = false;
      }
    };
    const drawImportance = (d) => hpCharts.importance(document.getElementById("importance"), d);
    const drawSteering = (d) => {
      hpCharts.steering(canvases.steering, d);
      const total = d.segments.reduce((n, s) => n + s.iterations, 0);
      document.getElementById("steering-note").textContent = total.toLocaleString() + " runs";
    };
    const seg = () => (segment === null ? "" : "?segment=" + segment);
    const charts = [
      ["history", () => api + "/history", drawHistory, 2000],
      ["parcoords", () => api + "/parcoords" + seg(), drawParcoords, 4000],
      ["importance", () => api + "/importance" + seg(), drawImportance, 4000],
      ["steering", () => api + "/steering", drawSteering, 4000],
    ];
    for (const [name, url, draw, ms] of charts) {
      refresh(name, url(), draw).catch((e) => hpCharts.message(canvases[name] || canvases.history, e.message));
      hp.every(pace(ms), () => refresh(name, url(), draw));
    }
    segmentSelect.addEventListener("change", () => {
      segment = segmentSelect.value;
      refresh("parcoords", api + "/parcoords" + seg(), drawParcoords);
      refresh("importance", api + "/importance" + seg(), drawImportance);
    });

    const table = new PointsTable(taskId);
    table.load();
    hp.every(pace(3000), () => table.load());

    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (last.history) drawHistory(last.history);
        if (last.parcoords) drawParcoords(last.parcoords);
        if (last.steering) drawSteering(last.steering);
      }, 150);
    });
  });
})();
