// Best so far and every result against the number of queries (creation order).
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.best = {
    render(body, b) {
      const p = b.points;
      const vals = p.values[b.primary];
      const sign = b.direction === "maximize" ? 1 : -1;
      const xs = [], ys = [], keys = [], bx = [], by = [], fx = [];
      let best = null;
      for (let i = 0; i < vals.length; i++) {
        if (p.status[i] === "failed" || p.status[i] === "cancelled") fx.push(i + 1);
        const v = vals[i];
        if (v === null) continue;
        xs.push(i + 1); ys.push(v); keys.push(p.key[i]);
        if (best === null || sign * v > sign * best) best = v;
        bx.push(i + 1); by.push(best);
      }
      TL.plot(TL.plotDiv(body), [
        { x: xs, y: ys, text: keys, type: "scattergl", mode: "markers", name: "result",
          marker: { size: 5, color: "#94a3b8" } },
        { x: bx, y: by, type: "scatter", mode: "lines", name: "best so far", line: { shape: "hv", color: "#2f6fde", width: 2 } },
        { x: fx, y: fx.map(() => Math.min(...ys)), type: "scatter", mode: "markers", name: "failed query",
          visible: fx.length ? true : "legendonly", marker: { symbol: "x", color: "#b42318" } },
      ], { xaxis: { title: { text: "queries" } }, yaxis: { title: { text: b.primary } } });
      TL.note(body, "count", xs.length + " results of " + vals.length + " queries");
    },
  };
})();
