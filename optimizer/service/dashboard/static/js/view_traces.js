// The sampler's diagnostics per round: α, the ESS fraction and λ per SMC step (unique ancestors:
// the rounds view).
(function () {
  "use strict";
  const TL = window.TL;
  const LAST = 8; // step traces drawn for the last rounds only
  TL.views.traces = {
    key(b) { return JSON.stringify(b.rounds.map((r) => [r.index, r.alpha, r.ess, r.lambdas])); },
    render(body, b) {
      const rs = b.rounds;
      const idx = rs.map((r) => r.index);
      TL.plot(TL.plotDiv(body, "plot-alpha"), [
        { x: idx, y: rs.map((r) => r.alpha), type: "scatter", mode: "lines+markers", name: "α" },
      ], { height: 220, xaxis: { title: { text: "round" }, dtick: idx.length > 30 ? undefined : 1 }, yaxis: { title: { text: "α" } } });
      const recent = rs.filter((r) => r.ess || r.lambdas).slice(-LAST);
      TL.plot(TL.plotDiv(body, "plot-ess"), recent.filter((r) => r.ess).map((r) => ({
        y: r.ess, type: "scatter", mode: "lines", name: "round " + r.index })),
        { height: 220, xaxis: { title: { text: "SMC step" } }, yaxis: { title: { text: "ESS / particles" }, range: [0, 1.05] } });
      TL.plot(TL.plotDiv(body, "plot-lambda"), recent.filter((r) => r.lambdas).map((r) => ({
        y: r.lambdas, type: "scatter", mode: "lines", name: "round " + r.index })),
        { height: 220, xaxis: { title: { text: "SMC step" } }, yaxis: { title: { text: "λ (tempering)" } } });
      TL.note(body, "count", recent.length ? "ESS and λ of the last " + recent.length + " rounds."
                                           : "No round stored ESS / λ traces yet.");
    },
  };
})();
