// Results per round: their spread (box) and the round's best.
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.rounds = {
    render(body, b) {
      const p = b.points;
      const vals = p.values[b.primary];
      const xs = [], ys = [];
      for (let i = 0; i < vals.length; i++) {
        if (vals[i] === null) continue;
        xs.push(p.round[i]); ys.push(vals[i]);
      }
      const r = b.rounds.filter((x) => x.best !== null);
      TL.plot(TL.plotDiv(body), [
        { x: xs, y: ys, type: "box", name: "results", boxpoints: xs.length < 2000 ? "all" : false,
          jitter: 0.4, pointpos: 0, marker: { size: 3, color: "#64748b" }, line: { color: "#64748b" } },
        { x: r.map((x) => x.index), y: r.map((x) => x.best), type: "scatter", mode: "lines+markers",
          name: "round best", line: { color: "#2f6fde" } },
      ], { xaxis: { title: { text: "round" }, dtick: 1 }, yaxis: { title: { text: b.primary } } });
    },
  };
})();
