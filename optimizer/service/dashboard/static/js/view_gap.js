// The over-optimization monitor: the surrogate's prediction against the oracle's result on the
// queried designs, and the gap over rounds (positive: the surrogate promised more), with a
// warning when it grows.
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.gap = {
    render(body, b) {
      const p = b.points;
      const vals = p.values[b.primary];
      const x = [], y = [], err = [], text = [], rnd = [];
      for (let i = 0; i < vals.length; i++) {
        if (vals[i] === null || p.surrogate_mean[i] === null) continue;
        x.push(p.surrogate_mean[i]); y.push(vals[i]); err.push(p.surrogate_std[i] || 0);
        text.push(p.key[i]); rnd.push(p.round[i]);
      }
      const lo = Math.min(...x, ...y), hi = Math.max(...x, ...y);
      TL.plot(TL.plotDiv(body, "plot-scatter"), [
        { x: x, y: y, text: text, type: "scattergl", mode: "markers", name: "queried design",
          error_x: { type: "data", array: err, visible: x.length < 500, color: "#cbd5e1" },
          marker: { size: 6, color: rnd, colorscale: "Viridis", showscale: true,
                    colorbar: { title: { text: "round" }, thickness: 10 } } },
        { x: [lo, hi], y: [lo, hi], type: "scatter", mode: "lines", name: "prediction = result",
          line: { dash: "dot", color: "#94a3b8" } },
      ], { xaxis: { title: { text: "surrogate prediction" } }, yaxis: { title: { text: "oracle " + b.primary } } });
      const r = b.rounds.filter((z) => z.gap !== null);
      TL.plot(TL.plotDiv(body, "plot-gap"), [
        { x: r.map((z) => z.index), y: r.map((z) => z.gap), type: "scatter", mode: "lines+markers", name: "mean gap (over-estimate)" },
        { x: r.map((z) => z.index), y: r.map((z) => z.abs_gap), type: "scatter", mode: "lines", name: "mean |gap|",
          line: { dash: "dash" } },
      ], { height: 220, xaxis: { title: { text: "round" }, dtick: 1 }, yaxis: { title: { text: "prediction − result" } } });
      let warn = body.querySelector("#gap-warning");
      if (!warn) { warn = TL.el("p", { id: "gap-warning", class: "warning" }); body.prepend(warn); }
      warn.textContent = b.gap_warning ? "Over-optimization warning: " + b.gap_warning : "";
      warn.hidden = !b.gap_warning;
      TL.note(body, "count", x.length ? x.length + " queried designs with a prediction and a result"
                                      : "no result with a surrogate prediction yet (round 0 is space-filling)");
    },
  };
})();
