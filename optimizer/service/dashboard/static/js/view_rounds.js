// Results per round: their spread (a box per round, its statistics computed by the server), the
// round's best, and its unique ancestors (distinct founders of its final particles; right axis);
// below, the round table: α (auto: its estimated KL, the brake), the sampler's diagnostics
// (min ESS fraction, resamplings, estimated KL(π‖p_pre)), batch diversity, families, wasted.
(function () {
  "use strict";
  const TL = window.TL;
  const pct = (v) => (v === null || v === undefined ? "—" : (100 * v).toFixed(0) + "%");

  function table(body, b) {
    const el = TL.el;
    const old = body.querySelector(".rounds-table-wrap");
    if (old) old.remove();
    // short headers (the card is half the page wide); the full name is each header's tooltip
    const cols = [["round", "round"], ["α", "α of the round"], ["KL", "estimated KL(π‖p_pre), nats"],
                  ["ESS min", "minimum ESS fraction over the SMC steps"], ["resampl.", "resampling events"],
                  ["anc.", "unique ancestors of the final particles"],
                  ["diversity", "batch diversity: mean pairwise distance in feature space"],
                  ["fam.", "ancestor families in the batch"], ["wasted", "every result below the running median"]];
    const rows = b.rounds.map((r) => {
      const d = r.diagnostics || {};
      const alpha = TL.fmt(r.alpha) + (d.alpha_auto ? (d.brake ? " (auto, braked)" : " (auto)") : "");
      // a small negative estimate is noise around 0 (a KL is never negative)
      const kl = TL.fmt(d.kl === null || d.kl === undefined ? d.kl : Math.max(0, d.kl), 3) + (d.kl_budget !== undefined && d.kl_budget !== null ? " / " + TL.fmt(d.kl_budget) : "");
      return el("tr", {},
        el("td", { class: "num", text: r.index }), el("td", { class: "num", text: alpha, title: d.alpha_reason || null }),
        el("td", { class: "num", text: kl }), el("td", { class: "num", text: pct(d.min_ess_fraction) }),
        el("td", { class: "num", text: TL.fmt(d.resampling_events) }), el("td", { class: "num", text: TL.fmt(r.unique_ancestors) }),
        el("td", { class: "num", text: TL.fmt(d.batch_diversity, 3) }), el("td", { class: "num", text: TL.fmt(d.batch_families) }),
        el("td", { text: d.wasted === null || d.wasted === undefined ? "—" : (d.wasted ? "yes" : "no") }));
    });
    const s = b.batches || {};
    body.append(el("div", { class: "table-wrap rounds-table-wrap" },
      el("table", { id: "rounds-table" }, el("thead", {}, el("tr", {}, cols.map(([h, t]) => el("th", { text: h, title: t })))),
         el("tbody", {}, rows)),
      el("p", { class: "note", id: "batches-note", text: "wasted batches (every result below the running median of the " +
        "earlier rounds): " + TL.fmt(s.wasted_batches) + " of " + TL.fmt(s.judged_batches) + "; mean batch diversity " +
        "(pairwise distance in feature space) " + TL.fmt(s.batch_diversity, 3) + "; ancestor families per batch " +
        TL.fmt(s.batch_families, 3) + ". KL: estimated from the round's weights (E_π[r]/α − log Ẑ); " +
        "with α auto, KL / budget." })));
  }

  TL.views.rounds = {
    key(b) { return JSON.stringify([b.batches, b.rounds.map((r) => [r.index, r.box, r.best, r.unique_ancestors, r.diagnostics])]); },
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
      table(body, b);
    },
  };
})();
