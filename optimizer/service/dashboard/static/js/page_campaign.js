// The campaign page: reads the bundle of /v1/campaigns/{name}/dashboard (or, in the
// self-contained report, window.TL_EMBED), renders every view, and re-reads it when the event
// stream (/v1/campaigns/{name}/events, Server-Sent Events) says something changed: no reload.
(function () {
  "use strict";
  const TL = window.TL;
  const el = TL.el;
  const embed = window.TL_EMBED || null;
  const name = embed ? embed.name : decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const ctx = { name: name, live: !embed, admin: false, refresh: null };
  const KINDS = ["status", "query.transition", "query.job_id", "round.recorded", "round.updated", "round.discarded",
                 "campaign.paused", "campaign.resumed", "campaign.cancelled", "campaign.updated",
                 "campaign.config_changed", "campaign.lease", "campaign.lease_released", "driver.started",
                 "driver.finished", "error"];
  const CARDS = [ // [view, card id, title, wide]
    ["best", "card-best", "Best so far and every result", false],
    ["pareto", "card-pareto", "Pareto front and hypervolume", false],
    ["rounds", "card-rounds", "Results per round", false],
    ["gap", "card-gap", "Surrogate vs oracle (over-optimization monitor)", false],
    ["traces", "card-traces", "Sampler: α, ESS, λ, ancestors per round", false],
    ["gallery", "card-gallery", "Top designs", false],
    ["table", "card-table", "Top designs table", true],
    ["failures", "card-failures", "Failures by cause", false],
    ["config", "card-config", "Config", false],
  ];

  document.title = "tiltloop · " + name;
  document.getElementById("crumb").textContent = name;
  const root = document.getElementById("app");
  const stats = el("div", { class: "stats", id: "summary" });
  const adminBox = el("div", { id: "admin-box" });
  const grid = el("div", { class: "grid", id: "views" });
  const problem = el("p", { class: "warning", id: "problem", hidden: true });
  root.append(problem, stats, adminBox, grid);

  let bundle = null;
  function renderAll() {
    TL.views.summary.render(stats, bundle, ctx);
    if (ctx.live && ctx.admin) {
      TL.views.admin.render(TL.card(adminBox, "card-admin", "Actions (admin)", true), bundle, ctx);
      document.getElementById("card-admin").classList.add("admin");
    }
    for (const [view, id, title, wide] of CARDS) {
      const v = TL.views[view];
      if (v.applies && !v.applies(bundle)) continue;
      try { v.render(TL.card(grid, id, title, wide), bundle, ctx); }
      catch (e) { console.error(view, e); TL.note(TL.card(grid, id, title, wide), "error", "could not draw: " + e.message); }
    }
    document.body.dataset.ready = "1";
    document.body.dataset.results = String(bundle.campaign.results);
    document.body.dataset.status = bundle.campaign.status;
  }

  let inFlight = null, again = false;
  async function refresh() {
    if (embed) { bundle = embed.bundle; renderAll(); return; }
    if (inFlight) { again = true; return inFlight; }
    inFlight = (async () => {
      try {
        bundle = await TL.api("/v1/campaigns/" + TL.enc(name) + "/dashboard");
        problem.hidden = true;
        renderAll();
      } catch (e) {
        problem.textContent = "Could not read the campaign: " + e.message;
        problem.hidden = false;
      }
    })();
    await inFlight;
    inFlight = null;
    if (again) { again = false; return refresh(); }
  }
  ctx.refresh = refresh;

  let timer = null;
  function soon() { // many events in a burst: one re-read
    if (timer) return;
    timer = setTimeout(() => { timer = null; refresh(); }, 250);
  }

  function listen() {
    const live = document.getElementById("live");
    const source = new EventSource("/v1/campaigns/" + TL.enc(name) + "/events");
    source.onopen = () => { live.textContent = "● live"; live.classList.add("on"); };
    source.onerror = () => { live.textContent = "○ reconnecting"; live.classList.remove("on"); };
    for (const kind of KINDS) source.addEventListener(kind, soon);
    source.onmessage = soon;
    ctx.source = source;
  }

  (async function start() {
    if (embed) {
      const live = document.getElementById("live");
      live.textContent = "snapshot " + (embed.generated_at || "");
      for (const f of document.querySelectorAll("form.logout")) f.remove();
      refresh();
      return;
    }
    try { ctx.admin = !!(await TL.api("/v1/whoami")).admin; } catch (e) { ctx.admin = false; }
    await refresh();
    listen();
  })();
})();
