// The campaign's headline numbers: status, budget used, best, in flight, failures, rounds,
// who drives it, its prior and oracle.
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.summary = {
    render(root, b) {
      const el = TL.el;
      const c = b.campaign;
      const q = c.queries || {};
      const spent = Object.values(q).reduce((a, x) => a + x, 0);
      const failed = (q.failed || 0) + (q.cancelled || 0);
      const prior = String(((b.config.current || {}).prior || {}).name || ""); // a name or a folder
      const stat = (id, label, value, extra, title) => el("div", { class: "stat", id: id, title: title || null },
        el("div", { class: "label", text: label }), el("div", { class: "value" }, value), extra || null);
      root.textContent = "";
      root.append(
        stat("stat-status", "status", el("span", { id: "status", class: "badge " + c.status,
                                                    "data-status": c.status, text: c.status })),
        stat("stat-budget", "budget used", spent + " / " + c.budget),
        stat("stat-best", "best " + c.objective + " (" + (c.direction === "maximize" ? "max" : "min") + ")",
             TL.fmt(c.best)),
        stat("stat-results", "results", String(c.results)),
        stat("stat-inflight", "in flight", String(c.in_flight)),
        stat("stat-failures", "failures", String(failed)),
        stat("stat-rounds", "rounds", String(c.rounds)),
        stat("stat-lease", "driven by", c.lease ? (c.lease.owner + (c.lease.live ? "" : " (expired)")) : "nobody"),
        stat("stat-prior", "prior", prior.split("/").pop() || "—", null, prior),
        stat("stat-oracle", "oracle", String(c.oracle_kind || "—")));
      if (c.paused_reason) {
        root.append(el("p", { class: "warning", id: "paused-reason", text: "Paused: " + c.paused_reason }));
      }
      if (c.stop_target !== null && c.stop_target !== undefined) {
        root.append(el("p", { class: "note", text: "stop target " + TL.fmt(c.stop_target) +
                              (c.target_reached ? " — reached" : " — not reached yet") }));
      }
    },
  };
})();
