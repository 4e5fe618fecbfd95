// The sampler's diagnostics per round: α, the ESS fraction and λ per SMC step, unique ancestors.
(function () {
  "use strict";
  const TL = window.TL;
  const LAST = 8; // step traces drawn for the last rounds only
  TL.views.traces = {
    key(b) { return JSON.stringify(b.rounds.map((r) => [r.index, r.alpha, r.unique_ancestors, r.particles, r.ess, r.lambdas])); },
    render(body, b) {
      const rs = b.rounds;
      const idx = rs.map((r) => r.index);
      const anc = rs.filter((r) => r.unique_ancestors !== null);
      TL.plot(TL.plotDiv(body, "plot-alpha"), [
        { x: idx, y: rs.map((r) => r.alpha), type: "scatter", mode: "lines+markers", name: "α" },
        { x: anc.map((r) => r.index), y: anc.map((r) => r.unique_ancestors), type: "scatter", mode: "lines+markers",
          name: "unique ancestors", yaxis: "y2" },
      ], { height: 220, margin: { l: 50, r: anc.length ? 56 : 16, t: 28, b: 40 }, xaxis: { title: { text: "round" }, dtick: idx.length > 30 ? undefined : 1 }, yaxis: { title: { text: "α" } },
           yaxis2: { overlaying: "y", side: "right", title: { text: "ancestors" }, showgrid: false, visible: anc.length > 0 } });
      const recent = rs.filter((r) => r.ess || r.lambdas).slice(-LAST);
      TL.plot(TL.plotDiv(body, "plot-ess"), recent.filter((r) => r.ess).map((r) => ({
        y: r.ess, type: "scatter", mode: "lines", name: "round " + r.index })),
        { height: 220, xaxis: { title: { text: "SMC step" } }, yaxis: { title: { text: "ESS / particles" }, range: [0, 1.05] } });
      TL.plot(TL.plotDiv(body, "plot-lambda"), recent.filter((r) => r.lambdas).map((r) => ({
        y: r.lambdas, type: "scatter", mode: "lines", name: "round " + r.index })),
        { height: 220, xaxis: { title: { text: "SMC step" } }, yaxis: { title: { text: "λ (tempering)" } } });
      TL.note(body, "count", (recent.length ? "ESS and λ of the last " + recent.length + " rounds. " :
        "No round stored ESS / λ traces yet. ") +
        (anc.length ? "Unique ancestors: distinct founders of each round's final particles (of " +
          TL.fmt(anc[anc.length - 1].particles) + " in the last)." : "Unique ancestors: not stored by these rounds."));
    },
  };
})();
