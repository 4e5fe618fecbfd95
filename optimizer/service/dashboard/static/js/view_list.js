// The campaign list: status, budget used, best, in flight, failures, last activity.
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.list = {
    render(root, items) {
      const el = TL.el;
      root.textContent = "";
      if (!items.length) {
        root.append(el("p", { class: "muted", text: "No campaigns yet. Create one with `tiltloop run` or POST /v1/campaigns." }));
        return;
      }
      const head = ["campaign", "status", "budget used", "best", "in flight", "failures", "rounds", "last activity"];
      const rows = items.map((c) => {
        const q = c.queries || {};
        const spent = Object.values(q).reduce((a, b) => a + b, 0);
        const failed = (q.failed || 0) + (q.cancelled || 0);
        return el("tr", { "data-campaign": c.name },
          el("td", {}, el("a", { href: "/campaigns/" + TL.enc(c.name), text: c.name })),
          el("td", {}, el("span", { class: "badge " + c.status, text: c.status })),
          el("td", { class: "num", text: spent + " / " + c.budget }),
          el("td", { class: "num", title: c.objective + " (" + c.direction + ")", text: TL.fmt(c.best) }),
          el("td", { class: "num", text: c.in_flight }),
          el("td", { class: "num", text: failed }),
          el("td", { class: "num", text: c.rounds }),
          el("td", { title: c.updated_at, text: TL.when(c.updated_at) }));
      });
      root.append(el("div", { class: "card wide" },
        el("h2", { text: "Campaigns (" + items.length + ")" }),
        el("div", { class: "table-wrap" },
          el("table", { id: "campaigns" },
            el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))),
            el("tbody", {}, rows)))));
    },
  };
})();
