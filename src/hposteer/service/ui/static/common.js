// hposteer web UI: live regions, relative times, confirmations, and JSON polling with ETags.
// Plain browser JavaScript served by the service itself (no framework, no build step).
"use strict";
(function () {
  const body = document.body;
  const serverNow = parseFloat(body.dataset.now || "");
  // Seconds to add to the browser's clock to get the database's (ages shown as the server sees them).
  const offset = Number.isFinite(serverNow) ? serverNow - Date.now() / 1000 : 0;
  const etags = new Map();
  let status = null;

  function now() { return Date.now() / 1000 + offset; }

  function duration(seconds) {
    const s = Math.max(0, seconds);
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h";
    return Math.floor(s / 86400) + " d";
  }

  function ago(ts) {
    const s = now() - ts;
    return s < 5 ? "just now" : duration(s) + " ago";
  }

  function refreshAges(root) {
    (root || document).querySelectorAll("time.ago[data-ts]").forEach((el) => {
      const ts = parseFloat(el.dataset.ts);
      if (Number.isFinite(ts)) el.textContent = ago(ts);
    });
  }

  function setStatus(text, bad) {
    if (!status) {
      status = document.createElement("div");
      status.className = "live-status";
      status.setAttribute("role", "status");
      // In the top bar, beside the user, where it never covers a chart or a table.
      const bar = document.querySelector("header.top");
      if (bar) bar.insertBefore(status, bar.querySelector(".who")); else body.appendChild(status);
    }
    status.textContent = text;
    status.classList.toggle("off", !!bad);
  }

  // GET with If-None-Match: resolves to {changed: false} on 304, {changed: true, body} otherwise.
  async function poll(url, kind) {
    const headers = { Accept: kind === "json" ? "application/json" : "text/html" };
    const known = etags.get(url);
    if (known) headers["If-None-Match"] = known;
    const response = await fetch(url, { headers, cache: "no-store", credentials: "same-origin" });
    if (response.status === 401 || response.redirected && response.url.includes("/ui/login")) {
      window.location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search) +
        "&reason=" + encodeURIComponent("Your session ended; log in again."));
      throw new Error("logged out");
    }
    if (response.status === 304) return { changed: false };
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { const err = await response.json(); message = err.error.message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    const etag = response.headers.get("ETag");
    if (etag) etags.set(url, etag); else etags.delete(url);
    return { changed: true, body: kind === "json" ? await response.json() : await response.text() };
  }

  // Repeat fn every `ms` while the tab is visible; `ms` may be a function (the page's state decides).
  function every(ms, fn) {
    let timer = null;
    async function tick() {
      if (!document.hidden) {
        try { await fn(); setStatus("live · updated " + new Date().toLocaleTimeString()); }
        catch (e) { if (e.message !== "logged out") setStatus("update failed: " + e.message, true); }
      }
      timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
    }
    timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) { clearTimeout(timer); tick(); }
    });
  }

  // Elements with data-live="URL" are replaced by the HTML fragment at URL every data-interval ms.
  function startLiveRegions() {
    document.querySelectorAll("[data-live]").forEach((el) => {
      const url = el.dataset.live;
      const interval = parseInt(el.dataset.interval || "5000", 10);
      every(() => (body.dataset.slow ? Math.max(interval, 15000) : interval), async () => {
        const result = await poll(url, "html");
        if (!result.changed) return;
        el.innerHTML = result.body;
        refreshAges(el);
        el.dispatchEvent(new CustomEvent("live:updated", { bubbles: true }));
      });
    });
  }

  // Forms with data-confirm ask first (kill, retry).
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function fmtLoss(v) {
    if (v === null || v === undefined) return "—";
    const a = Math.abs(v);
    if (v === 0 || (a >= 1e-3 && a < 1e5)) return String(Number(v.toPrecision(5)));
    return v.toExponential(3);
  }

  function fmtValue(v) {
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(5)));
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }

  // A value of a parameter searched on a log scale: its magnitude is what matters (3.2e-4).
  function fmtSci(v) {
    if (typeof v !== "number" || v === 0 || !Number.isFinite(v)) return fmtValue(v);
    return Number(v.toPrecision(3)).toExponential();
  }

  window.hp = { poll, every, el, ago, duration, fmtLoss, fmtValue, fmtSci, now, refreshAges };
  document.addEventListener("DOMContentLoaded", () => {
    refreshAges();
    startLiveRegions();
    setInterval(() => refreshAges(), 5000);
  });
})();
