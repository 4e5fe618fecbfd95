// Several objectives: the Pareto front of the first two, and the hypervolume over queries.
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.pareto = {
    applies(b) { return !!b.pareto; },
    key(b) { return JSON.stringify(b.pareto) + "|" + b.campaign.results; },
    render(body, b) {
      const pr = b.pareto;
      const [o1, o2] = pr.objectives;
      const p = b.points;
      const front = new Set(pr.front);
      const pts = { x: [], y: [], text: [] }, fr = { x: [], y: [], text: [] };
      for (let i = 0; i < p.key.length; i++) {
        const a = p.values[o1][i], c = p.values[o2][i];
        if (a === null || c === null) continue;
        const t = front.has(p.key[i]) ? fr : pts;
        t.x.push(a); t.y.push(c); t.text.push(p.key[i]);
      }
      const order = fr.x.map((_, i) => i).sort((i, j) => fr.x[i] - fr.x[j]);
      // the staircase bounds what the front dominates: with the first objective maximized the
      // next point's level starts at this point's x (vertical first), minimized it ends there
      const first = (b.objectives || []).find((o) => o.name === o1);
      const shape = first && first.direction === "minimize" ? "hv" : "vh";
      TL.plot(TL.plotDiv(body, "plot-front"), [
        Object.assign({ type: "scattergl", mode: "markers", name: "dominated", marker: { color: "#cbd5e1", size: 5 } }, pts),
        { x: order.map((i) => fr.x[i]), y: order.map((i) => fr.y[i]), text: order.map((i) => fr.text[i]),
          type: "scatter", mode: "lines+markers", name: "Pareto front", line: { shape: shape, color: "#2f6fde" } },
      ], { xaxis: { title: { text: o1 } }, yaxis: { title: { text: o2 } } });
      if (pr.hypervolume) {
        TL.plot(TL.plotDiv(body, "plot-hv"), [
          { x: pr.hypervolume.queries, y: pr.hypervolume.value, type: "scatter", mode: "lines", name: "hypervolume" },
        ], { height: 220, xaxis: { title: { text: "queries" } }, yaxis: { title: { text: "hypervolume" } } });
      }
      const ref = pr.hypervolume && pr.hypervolume.reference;
      TL.note(body, "count", front.size + " designs on the front of " + pr.objectives.join(" × ") +
              (ref ? "; hypervolume above the reference (" + pr.objectives.map((o, i) =>
                o + " = " + Number(ref[i]).toPrecision(4)).join(", ") + ")" : "") +
              (pr.objectives.length > 2 ? " (front drawn in the first two; hypervolume over all " +
               pr.objectives.length + ")" : ""));
    },
  };
})();
