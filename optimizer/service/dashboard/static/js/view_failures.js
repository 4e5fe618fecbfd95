// Failed and cancelled queries grouped by cause.
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.failures = {
    key(b) { return JSON.stringify(b.failures); },
    render(body, b) {
      const el = TL.el;
      body.textContent = "";
      if (!b.failures.length) { body.append(el("p", { class: "muted", text: "No failed query." })); return; }
      body.append(el("div", { class: "table-wrap" }, el("table", { id: "failures-table" },
        el("thead", {}, el("tr", {}, ["count", "cause", "example query"].map((h) => el("th", { text: h })))),
        el("tbody", {}, b.failures.map((f) => el("tr", {},
          el("td", { class: "num", text: f.count }), el("td", { style: "white-space:normal", text: f.cause }),
          el("td", {}, el("code", { text: f.example_key }))))))));
    },
  };
})();
