// The top designs as a sortable table, with one-click CSV / JSON export (the export route).
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.table = {
    key(b) { return JSON.stringify(b.top.map((t) => [t.key, t.values, t.surrogate_mean, t.feasible])); },
    render(body, b, ctx) {
      const el = TL.el;
      const objs = b.objectives.map((o) => o.name);
      const cols = [["key", "key", false], ["round", "round", true]]
        .concat(objs.map((o) => ["v:" + o, o, true]))
        .concat((b.constraints || []).map((c) => ["v:" + c.name, c.name + " " + c.op + " " + c.bound, true]))
        .concat((b.constraints || []).length ? [["feasible", "feasible", false]] : [])
        .concat([["surrogate_mean", "predicted", true], ["surrogate_std", "± std", true]]);
      const rows = b.top.map((t) => {
        const r = { key: t.key, round: t.round, surrogate_mean: t.surrogate_mean, surrogate_std: t.surrogate_std };
        for (const o of objs) r["v:" + o] = t.values[o] === undefined ? null : t.values[o];
        for (const c of b.constraints || []) r["v:" + c.name] = t.values[c.name] === undefined ? null : t.values[c.name];
        if ((b.constraints || []).length) r.feasible = t.feasible ? "yes" : "no";
        return r;
      });
      const state = (ctx.tableSort = ctx.tableSort || { col: "v:" + b.primary, dir: b.direction === "maximize" ? -1 : 1 });
      rows.sort((a, c) => {
        const x = a[state.col], y = c[state.col];
        if (x === y) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * state.dir;
      });
      body.textContent = "";
      if (ctx.live) {
        const base = "/v1/campaigns/" + TL.enc(ctx.name) + "/export?format=";
        body.append(el("div", { class: "toolbar" },
          el("a", { id: "export-csv", href: base + "csv", download: b.name + ".csv" }, el("button", { text: "Export CSV" })),
          el("a", { id: "export-json", href: base + "json", download: b.name + ".json" }, el("button", { text: "Export JSON" })),
          el("span", { class: "muted", text: "every query, as `tiltloop export` writes it" })));
      }
      const head = el("tr", {}, cols.map(([id, label, num]) => el("th", {
        class: "sortable" + (num ? " num" : ""), "data-col": id,
        "aria-sort": state.col === id ? (state.dir > 0 ? "ascending" : "descending") : "none",
        text: label,
        onclick: () => {
          state.dir = state.col === id ? -state.dir : (num ? -1 : 1);
          state.col = id;
          TL.views.table.render(body, b, ctx);
        } })));
      const trs = rows.map((r) => el("tr", { "data-key": r.key }, cols.map(([id, , num]) =>
        el("td", { class: num ? "num" : "", "data-col": id, text: num ? TL.fmt(r[id], 6) : r[id] }))));
      body.append(el("div", { class: "table-wrap" },
        el("table", { id: "top-table" }, el("thead", {}, head), el("tbody", {}, trs))));
      TL.note(body, "count", rows.length ? "the best " + rows.length + " succeeded designs by " + b.primary + "; click a column to sort"
                                          : "no succeeded design yet");
    },
  };
})();
