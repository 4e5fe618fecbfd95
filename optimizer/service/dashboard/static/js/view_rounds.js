// Results per round: their spread (a box per round, its statistics computed by the server), the
// round's best, and its unique ancestors (distinct founders of its final particles; right axis).
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.rounds = {
    key(b) { return JSON.stringify(b.rounds.map((r) => [r.index, r.box, r.best, r.unique_ancestors])); },
    render(body, b) {
      const r = b.rounds.filter((x) => x.box);
      const bx = r.map((x) => x.box);
      const pick = (f) => bx.map((s) => s[f]);
      const anc = b.rounds.filter((x) => x.unique_ancestors !== null);
      TL.plot(TL.plotDiv(body), [
        { type: "box", name: "results", x: r.map((x) => x.index), q1: pick("q1"), median: pick("median"),
          q3: pick("q3"), lowerfence: pick("lowerfence"), upperfence: pick("upperfence"), mean: pick("mean"),
          marker: { color: "#64748b" }, line: { color: "#64748b" } },
        { x: r.map((x) => x.index), y: r.map((x) => x.best), type: "scatter", mode: "lines+markers",
          name: "round best", line: { color: "#2f6fde" } },
        { x: anc.map((x) => x.index), y: anc.map((x) => x.unique_ancestors), type: "scatter", mode: "lines+markers",
          name: "unique ancestors", yaxis: "y2", visible: anc.length ? true : "legendonly",
          line: { color: "#e07b39", dash: "dot" }, marker: { size: 5 },
          text: anc.map((x) => "of " + TL.fmt(x.particles) + " particles") },
      ], { margin: { l: 50, r: anc.length ? 56 : 16, t: 28, b: 40 },
           xaxis: { title: { text: "round" }, dtick: b.rounds.length > 30 ? undefined : 1 }, yaxis: { title: { text: b.primary } },
           yaxis2: { overlaying: "y", side: "right", title: { text: "unique ancestors" }, showgrid: false, rangemode: "tozero",
                     tickmode: "auto", tickformat: "d",
                     visible: anc.length > 0 } });
      TL.note(body, "count", anc.length ? "unique ancestors: how many founders (initial particles) each round's final particles descend from"
                                        : "unique ancestors: not stored by these rounds (written before schema 0007)");
    },
  };
})();
