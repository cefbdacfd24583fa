// hposteer web UI: the task page's points table. Paging, sorting and filtering happen in the
// service (/ui/api/tasks/ID/points); this only draws the page it gets and keeps the URL in step.
"use strict";
(function () {
  const DEFAULTS = { pstate: "", sort: "number", order: "asc", page: 1, size: 50 };

  function PointsTable(taskId) {
    this.taskId = taskId;
    this.table = document.getElementById("points");
    this.info = document.getElementById("page-info");
    this.pageInput = document.getElementById("page-input");
    this.pages = 1;
    this.segments = 1;
    const q = new URLSearchParams(location.search);
    this.state = {
      pstate: q.get("pstate") || DEFAULTS.pstate,
      sort: q.get("sort") || DEFAULTS.sort,
      order: q.get("order") || DEFAULTS.order,
      page: parseInt(q.get("page") || "1", 10) || 1,
      size: parseInt(q.get("size") || "50", 10) || 50,
    };
    this.controls = {
      pstate: document.getElementById("f-state"), sort: document.getElementById("f-sort"),
      order: document.getElementById("f-order"), size: document.getElementById("f-size"),
    };
    for (const [key, select] of Object.entries(this.controls)) {
      select.value = String(this.state[key]);
      select.addEventListener("change", () => this.set({ [key]: key === "size" ? parseInt(select.value, 10) : select.value, page: 1 }));
    }
    document.getElementById("points-controls").addEventListener("submit", (e) => e.preventDefault());
    document.getElementById("pager").addEventListener("click", (e) => {
      const go = e.target.closest("button[data-go]");
      if (!go) return;
      const p = this.state.page;
      const target = { first: 1, prev: p - 1, next: p + 1, last: this.pages }[go.dataset.go];
      this.set({ page: Math.min(Math.max(1, target), this.pages) });
    });
    this.pageInput.addEventListener("change", () => {
      const p = parseInt(this.pageInput.value, 10);
      if (p >= 1) this.set({ page: Math.min(p, this.pages) });
    });
  }

  PointsTable.prototype.url = function () {
    const s = this.state;
    const q = new URLSearchParams({ sort: s.sort, order: s.order, page: s.page, size: s.size });
    if (s.pstate) q.set("state", s.pstate);
    return "/ui/api/tasks/" + this.taskId + "/points?" + q.toString();
  };

  PointsTable.prototype.set = function (changes) {
    Object.assign(this.state, changes);
    for (const [key, select] of Object.entries(this.controls)) select.value = String(this.state[key]);
    const q = new URLSearchParams(location.search);
    for (const [key, value] of Object.entries(this.state)) {
      if (String(value) === String(DEFAULTS[key])) q.delete(key); else q.set(key, value);
    }
    q.delete("notice"); q.delete("n");
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
    return this.load();
  };

  PointsTable.prototype.load = async function () {
    this.table.setAttribute("aria-busy", "true");
    try {
      const result = await hp.poll(this.url(), "json");
      if (result.changed) this.render(result.body);
    } finally {
      this.table.removeAttribute("aria-busy");
    }
  };

  PointsTable.prototype.header = function (label, key, cls) {
    const th = hp.el("th", { class: (cls || "") + (key ? " sortable" : ""), text: label, scope: "col" });
    if (key) {
      th.dataset.sort = key;
      if (this.state.sort === key) th.setAttribute("aria-sort", this.state.order === "asc" ? "ascending" : "descending");
      th.addEventListener("click", () => {
        const order = this.state.sort === key && this.state.order === "asc" ? "desc" : "asc";
        this.set({ sort: key, order, page: 1 });
      });
    }
    return th;
  };

  PointsTable.prototype.render = function (data) {
    this.pages = data.pages;
    const segmented = data.rows.some((r) => r.segment !== 0);
    const logScale = new Set(data.log_columns || []);
    const head = hp.el("tr", {}, [
      this.header("#", "number", "r"),
      ...(segmented ? [this.header("Seg.", null, "r")] : []),
      this.header("State", "state"),
      this.header("Loss", "loss", "r"),
      this.header("Attempts", null, "r"),
      this.header("Site", null), this.header("Pilot", null), this.header("Failure", null),
      ...data.columns.map((c) => this.header(c, null, "param")),
      this.header("Finished", null),
    ]);
    this.table.tHead.replaceChildren(head);
    const rows = data.rows.map((r) => {
      const link = hp.el("a", { href: "/ui/tasks/" + this.taskId + "/points/" + r.id, text: String(r.id) });
      return hp.el("tr", { "data-point": r.id, "data-state": r.state }, [
        hp.el("td", { class: "r" }, [link]),
        ...(segmented ? [hp.el("td", { class: "r", text: String(r.segment) })] : []),
        hp.el("td", {}, [hp.el("span", { class: "badge state-" + r.state, text: r.state })]),
        hp.el("td", { class: "r num" + (r.is_failure ? " bad" : ""), text: hp.fmtLoss(r.loss), title: r.is_failure ? "failure loss" : null }),
        hp.el("td", { class: "r", text: String(r.attempts) }),
        hp.el("td", { text: r.site || "—" }), hp.el("td", { text: r.pilot || "—" }),
        hp.el("td", { class: r.failure_class ? "bad" : "muted", text: r.failure_class ? r.failure_class + (r.exit_code !== null ? " (" + r.exit_code + ")" : "") : "—" }),
        ...data.columns.map((c) => hp.el("td", { class: "param", text: c in r.params ? (logScale.has(c) ? hp.fmtSci(r.params[c]) : hp.fmtValue(r.params[c])) : "" })),
        r.finished_at ? hp.el("td", {}, [hp.el("time", { class: "ago", "data-ts": r.finished_at, text: hp.ago(r.finished_at) })]) : hp.el("td", { class: "muted", text: "—" }),
      ]);
    });
    if (!rows.length) rows.push(hp.el("tr", {}, [hp.el("td", { colspan: String(9 + data.columns.length), class: "muted", text: "no points" + (data.state ? " in state " + data.state : "") })]));
    this.table.tBodies[0].replaceChildren(...rows);
    this.info.textContent = "page " + data.page + " of " + data.pages + " · " + data.total.toLocaleString() + " points" +
      (data.state ? " " + data.state : "") + " · sorted by " + data.sort + (data.order === "desc" ? " (descending)" : "");
    this.pageInput.max = String(data.pages);
    this.pageInput.value = String(data.page);
    for (const btn of document.querySelectorAll("#pager button")) {
      const go = btn.dataset.go;
      btn.disabled = (go === "first" || go === "prev") ? data.page <= 1 : data.page >= data.pages;
    }
    for (const [s, n] of Object.entries(data.counts)) {
      const option = this.controls.pstate.querySelector('option[value="' + s + '"]');
      if (option) option.textContent = s + " (" + n.toLocaleString() + ")";
    }
  };

  window.PointsTable = PointsTable;
})();
