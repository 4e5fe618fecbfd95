// The config (secrets redacted by the server) and its versions.
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.config = {
    key(b) { return JSON.stringify(b.config); },
    render(body, b, ctx) {
      const el = TL.el;
      const cfg = b.config;
      const versions = cfg.versions.length ? cfg.versions : [{ version: cfg.version, note: null, created_at: null, config: cfg.current }];
      const chosen = ctx.configVersion && versions.find((v) => v.version === ctx.configVersion) ? ctx.configVersion : null;
      body.textContent = "";
      const select = el("select", { id: "config-version", onchange: () => {
        ctx.configVersion = Number(select.value) || null; TL.views.config.render(body, b, ctx); } },
        el("option", { value: "", text: "current (version " + TL.fmt(cfg.version) + ")" }),
        versions.map((v) => el("option", { value: v.version, selected: chosen === v.version,
          text: "version " + v.version + (v.created_at ? " · " + v.created_at.slice(0, 19).replace("T", " ") : "") +
                (v.note ? " · " + v.note : "") })));
      const shown = chosen ? versions.find((v) => v.version === chosen).config : cfg.current;
      body.append(el("div", { class: "toolbar" }, select,
                     el("span", { class: "muted", text: versions.length + " version(s); secrets shown as ***" })),
                  el("pre", { class: "config", id: "config-json", text: JSON.stringify(shown, null, 2) }));
    },
  };
})();
