// hposteer web UI: charts drawn on <canvas> by this file alone (no chart library).
"use strict";
(function () {
  const COLORS = { done: "#2e8540", failed: "#c62828", running: "#1f6fb2", best: "#111", grid: "#e6eaef",
    ink: "#65717f", ok: "#2e8540", exhausted: "#8a96a3" };

  function setup(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    const w = Math.max(240, rect.width), h = Math.max(140, rect.height);
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "12px system-ui, sans-serif";
    return { ctx, w, h };
  }

  function linear(d0, d1, r0, r1) {
    const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
    const f = (v) => (d1 === d0 ? (r0 + r1) / 2 : r0 + (v - d0) * k);
    f.ticks = (n) => niceTicks(d0, d1, n);
    return f;
  }

  function logScale(d0, d1, r0, r1) {
    const f0 = linear(Math.log10(d0), Math.log10(d1), r0, r1);
    const f = (v) => f0(Math.log10(Math.max(v, d0)));
    f.ticks = () => {
      const out = [];
      for (let e = Math.ceil(Math.log10(d0)); e <= Math.floor(Math.log10(d1)); e++) out.push(Math.pow(10, e));
      return out.length >= 2 ? out : [d0, d1];
    };
    return f;
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / Math.max(1, n);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => (hi - lo) / s <= n) || 10 * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  const MARKER_RADIUS = 4;

  function scaleFor(kind, lo, hi, r0, r1) {
    if (kind === "log" && lo > 0 && hi > lo) return logScale(lo, hi, r0, r1);
    if (hi === lo) { lo -= 0.5; hi += 0.5; }
    return linear(lo, hi, r0, r1);
  }

  function tickLabel(v) {
    const a = Math.abs(v);
    if (v === 0) return "0";
    if (a >= 1e5 || a < 1e-3) return v.toExponential(0);
    return String(Number(v.toPrecision(4)));
  }

  function frame(ctx, box, x, y, xTicks, yTicks, xLabel) {
    ctx.strokeStyle = COLORS.grid;
    ctx.fillStyle = COLORS.ink;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of yTicks) {
      const py = Math.round(y(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(box.l, py); ctx.lineTo(box.r, py); ctx.stroke();
      ctx.fillText(tickLabel(t), box.l - 6, py);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of xTicks) {
      const px = Math.round(x(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(px, box.b); ctx.lineTo(px, box.b + 4); ctx.stroke();
      ctx.fillText(tickLabel(t), px, box.b + 6);
    }
    ctx.strokeStyle = "#b8c2cc";
    ctx.beginPath(); ctx.moveTo(box.l, box.t); ctx.lineTo(box.l, box.b); ctx.lineTo(box.r, box.b); ctx.stroke();
    if (xLabel) { ctx.textAlign = "right"; ctx.fillText(xLabel, box.r, box.b + 18); }
  }

  // Tooltip and click targets shared by the charts: [{x, y, text, href}] per canvas.
  const targets = new WeakMap();
  let tip = null;
  function nearest(canvas, event) {
    const list = targets.get(canvas) || [];
    const rect = canvas.getBoundingClientRect();
    const mx = event.clientX - rect.left, my = event.clientY - rect.top;
    let best = null, bestD = 64;
    for (const t of list) {
      const d = (t.x - mx) ** 2 + (t.y - my) ** 2;
      if (d < bestD) { best = t; bestD = d; }
    }
    return best;
  }
  function interactive(canvas) {
    if (canvas.dataset.interactive) return;
    canvas.dataset.interactive = "1";
    canvas.addEventListener("mousemove", (e) => {
      const t = nearest(canvas, e);
      if (!tip) { tip = document.createElement("div"); tip.className = "tooltip"; document.body.appendChild(tip); }
      tip.hidden = !t;
      canvas.style.cursor = t && t.href ? "pointer" : "crosshair";
      if (t) { tip.textContent = t.text; tip.style.left = e.clientX + 12 + "px"; tip.style.top = e.clientY + 12 + "px"; }
    });
    canvas.addEventListener("mouseleave", () => { if (tip) tip.hidden = true; });
    canvas.addEventListener("click", (e) => { const t = nearest(canvas, e); if (t && t.href) location.assign(t.href); });
  }

  function message(canvas, text) {
    const { ctx, w, h } = setup(canvas);
    ctx.fillStyle = COLORS.ink; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText(text, w / 2, h / 2);
    targets.set(canvas, []);
  }

  function quantile(sorted, q) {
    const pos = (sorted.length - 1) * q, i = Math.floor(pos);
    return i + 1 < sorted.length ? sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]) : sorted[i];
  }

  // Losses far on the bad side of the others (beyond Q3 + 3 IQR, in log space on a log scale) would
  // squeeze the useful range into a few pixels: they are clipped, drawn as triangles at the edge.
  function outlierFence(losses, kind, mode) {
    if (losses.length < 8) return null;
    const t = kind === "log" ? Math.log10 : (v) => v;
    const sorted = losses.map(t).sort((a, b) => a - b);
    const q1 = quantile(sorted, 0.25), q3 = quantile(sorted, 0.75), iqr = q3 - q1;
    if (!(iqr > 0)) return null;
    const back = kind === "log" ? (v) => Math.pow(10, v) : (v) => v;
    return mode === "max" ? { low: back(q1 - 3 * iqr) } : { high: back(q3 + 3 * iqr) };
  }

  // opts: { scale: "auto" | "linear" | "log", showOutliers: bool }. Returns what was drawn (and
  // records it on the canvas as data-* attributes, which the browser tests read).
  function history(canvas, data, taskId, opts) {
    opts = opts || {};
    const done = data.points.filter((p) => !p[2]);
    const failed = data.points.filter((p) => p[2]);
    if (!data.points.length) { message(canvas, "no point finished yet"); return { scale: "none", clipped: 0, logAvailable: false }; }
    const { ctx, w, h } = setup(canvas);
    const box = { l: 64, r: w - 14, t: 16, b: h - 34 };
    const losses = done.map((p) => p[1]);
    const all = [...losses, ...data.best.map((b) => b[1])];
    let lo = all.length ? Math.min(...all) : 0, hi = all.length ? Math.max(...all) : 1;
    const logAvailable = lo > 0;
    const wanted = opts.scale === "log" || opts.scale === "linear" ? opts.scale : (lo > 0 && hi / lo > 100 ? "log" : "linear");
    const kind = wanted === "log" && !logAvailable ? "linear" : wanted;
    const fence = opts.showOutliers ? null : outlierFence(losses, kind, data.mode);
    const isFar = (v) => fence !== null && ((fence.high !== undefined && v > fence.high) || (fence.low !== undefined && v < fence.low));
    const far = done.filter((p) => isFar(p[1]));
    if (far.length) {
      const kept = all.filter((v) => !isFar(v));
      lo = Math.min(...kept); hi = Math.max(...kept);
    }
    const lastN = Math.max(data.total, 2);
    const x = linear(1, lastN, box.l, box.r);
    // Pad the y range so the best point and the highest point sit inside the plot, not on its edges.
    if (kind === "log") { const r = hi / lo > 1 ? hi / lo : 10; lo /= Math.pow(r, 0.06); hi *= Math.pow(r, 0.06); }
    else { const pad = (hi - lo || Math.abs(hi) || 1) * 0.06; lo -= pad; hi += pad; }
    const top = box.t + 18; // above it: the lanes of failed points and clipped outliers
    const y = scaleFor(kind, lo, hi, box.b, top);
    // Point numbers are integers: never label a fractional tick.
    const xTicks = x.ticks(6).filter((t) => Number.isInteger(t));
    frame(ctx, box, x, y, xTicks, y.ticks(5), "point number" + (kind === "log" ? " · log loss" : ""));
    const list = [];
    const link = (n) => "/ui/tasks/" + taskId + "/points/" + n;
    ctx.fillStyle = "rgba(46,133,64,0.55)";
    ctx.strokeStyle = COLORS.done;
    ctx.lineWidth = 1.5;
    for (const p of done) {
      if (isFar(p[1])) continue;
      const px = x(p[0]), py = y(p[1]);
      ctx.beginPath(); ctx.arc(px, py, MARKER_RADIUS, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      list.push({ x: px, y: py, text: "point " + p[0] + "\nloss " + hp.fmtLoss(p[1]), href: link(p[0]) });
    }
    const edge = data.mode === "max" ? box.b - 6 : box.t + 12;
    ctx.fillStyle = "rgba(230,126,34,0.85)";
    for (const p of far) {
      const px = x(p[0]), up = data.mode !== "max";
      ctx.beginPath();
      ctx.moveTo(px, edge + (up ? -5 : 5)); ctx.lineTo(px - 5, edge + (up ? 4 : -4)); ctx.lineTo(px + 5, edge + (up ? 4 : -4));
      ctx.closePath(); ctx.fill();
      list.push({ x: px, y: edge, text: "point " + p[0] + "\nloss " + hp.fmtLoss(p[1]) + "\n(far outlier, clipped)", href: link(p[0]) });
    }
    ctx.fillStyle = "rgba(198,40,40,0.8)";
    for (const p of failed) {
      const px = x(p[0]);
      ctx.fillRect(px - 1, box.t, 2, 7);
      list.push({ x: px, y: box.t + 3, text: "point " + p[0] + " failed", href: link(p[0]) });
    }
    if (data.best.length) {
      ctx.strokeStyle = "rgba(17,17,17,0.7)"; ctx.lineWidth = 1.5; ctx.beginPath();
      let prev = null;
      for (const [n, loss] of data.best) {
        if (prev === null) ctx.moveTo(x(n), y(loss)); else { ctx.lineTo(x(n), y(prev)); ctx.lineTo(x(n), y(loss)); }
        prev = loss;
        list.push({ x: x(n), y: y(loss), text: "new best at point " + n + "\nloss " + hp.fmtLoss(loss), href: link(n) });
      }
      const lastFinished = Math.max(...data.points.map((p) => p[0]));
      ctx.lineTo(x(Math.max(lastFinished, data.best[data.best.length - 1][0])), y(prev));
      ctx.stroke();
    }
    targets.set(canvas, list);
    interactive(canvas);
    const drawn = { scale: kind, clipped: far.length, logAvailable, markerRadius: MARKER_RADIUS, xTicks, yRange: [lo, hi] };
    Object.assign(canvas.dataset, {
      scale: kind, clipped: String(far.length), logAvailable: String(logAvailable), markerRadius: String(MARKER_RADIUS),
      xTicks: JSON.stringify(xTicks), yRange: JSON.stringify([lo, hi]), plotTop: String(box.t), plotBottom: String(box.b),
    });
    return drawn;
  }

  function lossColor(t, alpha) {
    // t = 0 for the best loss, 1 for the worst: dark blue to pale yellow.
    const hue = 225 - 180 * t, light = 28 + 45 * t;
    return "hsla(" + hue.toFixed(0) + ",70%," + light.toFixed(0) + "%," + alpha + ")";
  }

  function parcoords(canvas, data, taskId) {
    if (!data.lines.length) { message(canvas, "no point done yet"); return; }
    const { ctx, w, h } = setup(canvas);
    const axes = [...data.axes, data.loss];
    const top = 30, bottom = h - 26;
    const left = 50, right = w - 60;
    const gap = axes.length > 1 ? (right - left) / (axes.length - 1) : 0;
    const scales = axes.map((ax) => {
      if (ax.kind === "category") {
        const n = Math.max(ax.categories.length, 1);
        return (i) => bottom - ((i + 0.5) / n) * (bottom - top);
      }
      return scaleFor(ax.kind, ax.min, ax.max, bottom, top);
    });
    const sorted = data.lines.map((l) => l.loss).sort((a, b) => a - b);
    const rank = (v) => { let lo = 0, hi = sorted.length; while (lo < hi) { const m = (lo + hi) >> 1; if (sorted[m] < v) lo = m + 1; else hi = m; } return lo / Math.max(1, sorted.length - 1); };
    const draw = (line, width, alpha) => {
      let t = rank(line.loss); if (data.mode === "max") t = 1 - t;
      ctx.strokeStyle = lossColor(t, alpha); ctx.lineWidth = width; ctx.beginPath();
      let pen = false;
      [...line.values, line.loss].forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        const px = left + i * gap, py = scales[i](v);
        if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        pen = true;
      });
      ctx.stroke();
    };
    const ordinary = data.lines.filter((l) => !l.best).sort((a, b) => (data.mode === "max" ? a.loss - b.loss : b.loss - a.loss));
    for (const line of ordinary) draw(line, 1, 0.35);
    for (const line of data.lines.filter((l) => l.best)) draw(line, 2.2, 0.95);
    ctx.fillStyle = COLORS.ink; ctx.strokeStyle = "#8a96a3"; ctx.lineWidth = 1;
    const list = [];
    axes.forEach((ax, i) => {
      const px = Math.round(left + i * gap) + 0.5;
      ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, bottom); ctx.stroke();
      ctx.textAlign = "center"; ctx.textBaseline = "bottom"; ctx.font = "bold 12px system-ui, sans-serif";
      ctx.fillText(ax.name, px, top - 8);
      ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle"; ctx.textAlign = i === axes.length - 1 ? "left" : "right";
      const dx = i === axes.length - 1 ? 5 : -5;
      const label = (text, y) => { // a white halo keeps labels legible over the lines
        ctx.strokeStyle = "rgba(255,255,255,0.9)"; ctx.lineWidth = 3; ctx.strokeText(text, px + dx, y);
        ctx.fillText(text, px + dx, y); ctx.strokeStyle = "#8a96a3"; ctx.lineWidth = 1;
      };
      if (ax.kind === "category") {
        const shown = ax.categories.length <= 12 ? ax.categories.map((c, k) => [c, k]) : [];
        for (const [c, k] of shown) label(c.replace(/^"|"$/g, ""), scales[i](k));
      } else {
        for (const v of [ax.min, ax.max]) label(tickLabel(v), scales[i](v));
      }
    });
    for (const line of data.lines.filter((l) => l.best)) {
      list.push({ x: right, y: scales[axes.length - 1](line.loss), text: "point " + line.id + "\nloss " + hp.fmtLoss(line.loss), href: "/ui/tasks/" + taskId + "/points/" + line.id });
    }
    targets.set(canvas, list);
    interactive(canvas);
  }

  function importance(container, data) {
    container.replaceChildren();
    if (!data.parameters.length) {
      container.append(hp.el("p", { class: "muted", text: "Needs at least " + data.min_points + " done points (" + data.points + " so far)." }));
      return;
    }
    const top = Math.max(...data.parameters.map((p) => p.importance), 1e-9);
    for (const p of data.parameters) {
      const fill = hp.el("div", { class: "fill" });
      fill.style.width = (100 * p.importance / top).toFixed(1) + "%";
      container.append(hp.el("div", { class: "row", "data-param": p.name }, [
        hp.el("span", { class: "name", title: p.name, text: p.name }),
        hp.el("div", { class: "track", title: "ω² = " + p.importance + " (" + p.groups + " groups)" }, [fill]),
        hp.el("span", { class: "num r", text: p.importance.toFixed(3) }),
        hp.el("span", { class: "num r muted small", text: p.spearman === null ? "" : "ρ " + p.spearman.toFixed(2) }),
      ]));
    }
    container.append(hp.el("p", { class: "muted small", text: "from " + data.points + " done points" }));
  }

  function steering(canvas, data) {
    const runs = data.segments.flatMap((s) => s.runs);
    if (!runs.length) { message(canvas, "no steering run yet"); return; }
    const { ctx, w, h } = setup(canvas);
    const box = { l: 58, r: w - 10, t: 12, b: h - 34 };
    const durations = runs.map((r) => Math.max(r[1], 0.01));
    const lo = Math.min(...durations), hi = Math.max(...durations);
    const kind = hi / lo > 50 ? "log" : "linear";
    const x = linear(1, Math.max(2, ...runs.map((r) => r[0])), box.l, box.r);
    const y = scaleFor(kind, kind === "log" ? lo : 0, hi, box.b, box.t);
    frame(ctx, box, x, y, x.ticks(5), y.ticks(4), "iteration · ms");
    const list = [];
    for (const [it, ms, outcome] of runs) {
      ctx.fillStyle = COLORS[outcome] || COLORS.ink;
      const px = x(it), py = y(Math.max(ms, 0.01));
      ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
      list.push({ x: px, y: py, text: "iteration " + it + ": " + outcome + "\n" + ms.toFixed(1) + " ms" });
    }
    targets.set(canvas, list);
    interactive(canvas);
  }

  window.hpCharts = { history, parcoords, importance, steering, message };
})();
