// Best so far and every result against the number of queries (creation order). A live update
// appends the new results to the scatter (Plotly.extendTraces) and redraws the small step line.
(function () {
  "use strict";
  const TL = window.TL;
  const failed = (s) => s === "failed" || s === "cancelled";
  // [[constraints]]: an infeasible result is drawn apart and never the best
  const infeasible = (p, i) => !!p.feasible && p.feasible[i] === false;

  // the step line of the best so far, and the failed queries (at the lowest result)
  function summary(b) {
    const p = b.points, vals = p.values[b.primary];
    const xs = [], ys = [], fx = [];
    let lo = null;
    for (let i = 0; i < vals.length; i++) {
      if (failed(p.status[i])) fx.push(i + 1);
      const v = vals[i];
      if (v === null) continue;
      if (lo === null || v < lo) lo = v;
      if (infeasible(p, i)) continue;
      xs.push(i + 1); ys.push(v);
    }
    const [bx, by] = TL.bestSteps(xs, ys, b.direction === "maximize" ? 1 : -1);
    const ix = [], iy = [];
    for (let i = 0; i < vals.length; i++) if (vals[i] !== null && infeasible(p, i)) { ix.push(i + 1); iy.push(vals[i]); }
    return { bx, by, fx, fy: fx.map(() => lo), ix, iy, n: xs.length + ix.length, total: vals.length };
  }

  TL.views.best = {
    render(body, b) {
      const p = b.points, vals = p.values[b.primary];
      const xs = [], ys = [], keys = [];
      const shown = new Uint8Array(vals.length + 1024);
      for (let i = 0; i < vals.length; i++) {
        if (vals[i] === null) continue;
        xs.push(i + 1); ys.push(vals[i]); keys.push(p.key[i]); shown[i] = 1;
      }
      const s = summary(b);
      const div = TL.plotDiv(body);
      div.tlShown = shown;
      TL.plot(div, [
        { x: xs, y: ys, text: keys, type: "scattergl", mode: "markers", name: "result",
          marker: { size: 5, color: "#94a3b8" } },
        { x: s.bx, y: s.by, type: "scatter", mode: "lines", name: "best so far", line: { shape: "hv", color: "#2f6fde", width: 2 } },
        { x: s.fx, y: s.fy, type: "scatter", mode: "markers", name: "failed query",
          visible: s.fx.length ? true : "legendonly", marker: { symbol: "x", color: "#b42318" } },
        { x: s.ix, y: s.iy, type: "scatter", mode: "markers", name: "infeasible result",
          visible: s.ix.length ? true : "legendonly",
          marker: { symbol: "circle-open", size: 7, color: "#d97706" } },
      ], { xaxis: { title: { text: "queries" } }, yaxis: { title: { text: b.primary } } });
      TL.note(body, "count", s.n + " results of " + s.total + " queries");
    },
    update(body, b, ctx, change) {
      const div = body.querySelector(".js-plotly-plot");
      if (!div || !div.tlShown) return this.render(body, b);
      const p = b.points, vals = p.values[b.primary];
      if (vals.length > div.tlShown.length) {
        const grown = new Uint8Array(vals.length * 2);
        grown.set(div.tlShown);
        div.tlShown = grown;
      }
      const x = [], y = [], text = [];
      for (const i of change.updated.concat(change.appended).sort((a, c) => a - c)) {
        if (vals[i] === null || div.tlShown[i]) continue;
        x.push(i + 1); y.push(vals[i]); text.push(p.key[i]); div.tlShown[i] = 1;
      }
      if (x.length) window.Plotly.extendTraces(div, { x: [x], y: [y], text: [text] }, [0]);
      const s = summary(b);
      window.Plotly.restyle(div, { x: [s.bx, s.fx, s.ix], y: [s.by, s.fy, s.iy],
        visible: [true, s.fx.length ? true : "legendonly", s.ix.length ? true : "legendonly"] }, [1, 2, 3]);
      TL.note(body, "count", s.n + " results of " + s.total + " queries");
    },
  };
})();
