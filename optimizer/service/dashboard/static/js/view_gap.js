// The over-optimization monitor: the surrogate's prediction against the oracle's result on the
// queried designs, and the gap over rounds (positive: the surrogate promised more), with a
// warning when it grows. A live update appends the new pairs to the scatter (extendTraces).
(function () {
  "use strict";
  const TL = window.TL;
  const ERR_BARS = 500; // error bars drawn below this many points

  // the (prediction, result) pairs at positions `idx` not drawn yet
  function pairs(b, idx, shown) {
    const p = b.points, vals = p.values[b.primary];
    const out = { x: [], y: [], err: [], text: [], rnd: [] };
    for (const i of idx) {
      if (vals[i] === null || p.surrogate_mean[i] === null || shown[i]) continue;
      out.x.push(p.surrogate_mean[i]); out.y.push(vals[i]); out.err.push(p.surrogate_std[i] || 0);
      out.text.push(p.key[i]); out.rnd.push(p.round[i]); shown[i] = 1;
    }
    return out;
  }

  function extent(xs, ys, lo, hi) {
    for (const a of [xs, ys]) for (const v of a) { if (lo === null || v < lo) lo = v; if (hi === null || v > hi) hi = v; }
    return [lo, hi];
  }

  function side(body, b, count) {
    const r = b.rounds.filter((z) => z.gap !== null);
    const div = TL.plotDiv(body, "plot-gap");
    const key = JSON.stringify(r.map((z) => [z.index, z.gap, z.abs_gap]));
    if (div.tlKey !== key) TL.plot(div, [
      { x: r.map((z) => z.index), y: r.map((z) => z.gap), type: "scatter", mode: "lines+markers", name: "mean gap (over-estimate)" },
      { x: r.map((z) => z.index), y: r.map((z) => z.abs_gap), type: "scatter", mode: "lines", name: "mean |gap|",
        line: { dash: "dash" } },
    ], { height: 220, xaxis: { title: { text: "round" }, dtick: r.length > 30 ? undefined : 1 }, yaxis: { title: { text: "prediction − result" } } });
    div.tlKey = key;
    let warn = body.querySelector("#gap-warning");
    if (!warn) { warn = TL.el("p", { id: "gap-warning", class: "warning" }); body.prepend(warn); }
    warn.textContent = b.gap_warning ? "Over-optimization warning: " + b.gap_warning : "";
    warn.hidden = !b.gap_warning;
    TL.note(body, "count", count ? count + " queried designs with a prediction and a result"
                                 : "no result with a surrogate prediction yet (round 0 is space-filling)");
  }

  TL.views.gap = {
    render(body, b) {
      const n = b.points.key.length;
      const shown = new Uint8Array(n + 1024);
      const s = pairs(b, Array.from({ length: n }, (_, i) => i), shown);
      const [lo, hi] = extent(s.x, s.y, null, null);
      const div = TL.plotDiv(body, "plot-scatter");
      TL.plot(div, [
        { x: s.x, y: s.y, text: s.text, type: "scattergl", mode: "markers", name: "queried design",
          // error bars only while few: with thousands of points they hide them and cost redraws
          error_x: s.x.length < ERR_BARS ? { type: "data", array: s.err, color: "#cbd5e1" } : undefined,
          marker: { size: 6, color: s.rnd, colorscale: "Viridis", showscale: true,
                    colorbar: { title: { text: "round" }, thickness: 10 } } },
        { x: [lo, hi], y: [lo, hi], type: "scatter", mode: "lines", name: "prediction = result",
          line: { dash: "dot", color: "#94a3b8" } },
      ], { xaxis: { title: { text: "surrogate prediction" } }, yaxis: { title: { text: "oracle " + b.primary } } });
      Object.assign(div, { tlShown: shown, tlCount: s.x.length, tlExtent: [lo, hi] });
      side(body, b, s.x.length);
    },
    update(body, b, ctx, change) {
      const div = body.querySelector(".plot-scatter.js-plotly-plot");
      if (!div || !div.tlShown) return this.render(body, b);
      const n = b.points.key.length;
      if (n > div.tlShown.length) { const g = new Uint8Array(n * 2); g.set(div.tlShown); div.tlShown = g; }
      const s = pairs(b, change.updated.concat(change.appended).sort((a, c) => a - c), div.tlShown);
      if (s.x.length && div.tlCount + s.x.length >= ERR_BARS && div.tlCount < ERR_BARS) {
        return this.render(body, b); // the error bars go: one redraw
      }
      if (s.x.length) {
        const more = { x: [s.x], y: [s.y], text: [s.text], "marker.color": [s.rnd] };
        if (div.tlCount < ERR_BARS) more["error_x.array"] = [s.err];
        window.Plotly.extendTraces(div, more, [0]);
        div.tlCount += s.x.length;
        const [lo, hi] = extent(s.x, s.y, div.tlExtent[0], div.tlExtent[1]);
        if (lo !== div.tlExtent[0] || hi !== div.tlExtent[1]) { // the diagonal spans every point
          div.tlExtent = [lo, hi];
          window.Plotly.restyle(div, { x: [[lo, hi]], y: [[lo, hi]] }, [1]);
        }
      }
      side(body, b, div.tlCount);
    },
  };
})();
