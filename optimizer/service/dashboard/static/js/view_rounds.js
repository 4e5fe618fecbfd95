// Results per round: their spread (a box per round, its statistics computed by the server) and
// the round's best.
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.rounds = {
    key(b) { return JSON.stringify(b.rounds.map((r) => [r.index, r.box, r.best])); },
    render(body, b) {
      const r = b.rounds.filter((x) => x.box);
      const bx = r.map((x) => x.box);
      const pick = (f) => bx.map((s) => s[f]);
      TL.plot(TL.plotDiv(body), [
        { type: "box", name: "results", x: r.map((x) => x.index), q1: pick("q1"), median: pick("median"),
          q3: pick("q3"), lowerfence: pick("lowerfence"), upperfence: pick("upperfence"), mean: pick("mean"),
          text: bx.map((s) => s.n + " results"), marker: { color: "#64748b" }, line: { color: "#64748b" } },
        { x: r.map((x) => x.index), y: r.map((x) => x.best), type: "scatter", mode: "lines+markers",
          name: "round best", line: { color: "#2f6fde" } },
      ], { xaxis: { title: { text: "round" }, dtick: r.length > 30 ? undefined : 1 }, yaxis: { title: { text: b.primary } } });
    },
  };
})();
