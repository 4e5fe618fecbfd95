// The campaign page: reads the bundle of /v1/campaigns/{name}/dashboard (or, in the
// self-contained file, window.TL_EMBED) and renders every view; when the event stream
// (/v1/campaigns/{name}/events, Server-Sent Events) says something changed, it reads only what
// changed since its cursor (?after=CURSOR), merges it into the bundle by query key, and redraws
// only the views whose data changed (the big scatters append their new points): no reload.
(function () {
  "use strict";
  const TL = window.TL;
  const el = TL.el;
  const embed = window.TL_EMBED || null;
  const name = embed ? embed.name : TL.campaignName();
  const ctx = { name: name, live: !embed, admin: false, refresh: null };
  const KINDS = ["status", "query.transition", "query.job_id", "round.recorded", "round.updated", "round.discarded",
                 "campaign.paused", "campaign.resumed", "campaign.cancelled", "campaign.updated",
                 "campaign.config_changed", "campaign.lease", "campaign.lease_released", "driver.started",
                 "driver.finished", "error"];
  const CARDS = [ // [view, card id, title, wide]
    ["best", "card-best", "Best so far and every result", false],
    ["pareto", "card-pareto", "Pareto front and hypervolume", false],
    ["rounds", "card-rounds", "Results and unique ancestors per round", false],
    ["gap", "card-gap", "Surrogate vs oracle (over-optimization monitor)", false],
    ["traces", "card-traces", "Sampler: α, ESS, λ per round", false],
    ["gallery", "card-gallery", "Top designs", false],
    ["table", "card-table", "Top designs table", true],
    ["failures", "card-failures", "Failures by cause", false],
    ["config", "card-config", "Config", false],
  ];
  // what the page fetched and drew (read by the browser tests and the bench)
  const stats = (window.TL_STATS = { full: 0, delta: 0, renders: {}, updates: {}, ms: {} });

  document.title = "tiltloop · " + name;
  document.getElementById("crumb").textContent = name;
  const root = document.getElementById("app");
  const summary = el("div", { class: "stats", id: "summary" });
  const adminBox = el("div", { id: "admin-box" });
  const grid = el("div", { class: "grid", id: "views" });
  const problem = el("p", { class: "warning", id: "problem", hidden: true });
  root.append(problem, summary, adminBox, grid);

  let bundle = null;
  let keyIndex = new Map(); // query key -> its position in bundle.points
  const drawn = {}; // view -> the data key it last drew (a view with key(b) redraws when it differs)

  function indexPoints() {
    keyIndex = new Map(bundle.points.key.map((k, i) => [k, i]));
  }

  // merge a delta answer into the bundle; returns the positions of appended and updated points
  function merge(d) {
    const p = bundle.points, q = d.points, objs = Object.keys(p.values);
    const change = { appended: [], updated: [] };
    for (let j = 0; j < q.key.length; j++) {
      let i = keyIndex.get(q.key[j]);
      if (i === undefined) {
        i = p.key.length;
        keyIndex.set(q.key[j], i);
        change.appended.push(i);
      } else change.updated.push(i);
      p.key[i] = q.key[j]; p.round[i] = q.round[j]; p.status[i] = q.status[j];
      p.surrogate_mean[i] = q.surrogate_mean[j]; p.surrogate_std[i] = q.surrogate_std[j];
      for (const o of objs) p.values[o][i] = q.values[o][j];
      if (p.feasible && q.feasible) p.feasible[i] = q.feasible[j]; // [[constraints]]
    }
    const rounds = new Map(bundle.rounds.map((r) => [r.index, r]));
    for (const r of d.rounds) rounds.set(r.index, r);
    const merged = Object.assign({}, d, { points: p, rounds: [...rounds.values()].sort((a, b) => a.index - b.index) });
    bundle = merged;
    return change;
  }

  const nextFrame = () => new Promise((resolve) => setTimeout(resolve, 0));

  // change: null (draw everything from the bundle) or the merged positions (update in place)
  async function renderAll(change) {
    TL.views.summary.render(summary, bundle, ctx);
    if (ctx.live && ctx.admin) {
      TL.views.admin.render(TL.card(adminBox, "card-admin", "Actions (admin)", true), bundle, ctx);
      document.getElementById("card-admin").classList.add("admin");
    }
    // every card first: the grid's columns are final before a plot measures its width
    const shown = CARDS.filter(([view]) => !TL.views[view].applies || TL.views[view].applies(bundle));
    for (const [, id, title, wide] of shown) TL.card(grid, id, title, wide);
    let first = true;
    for (const [view, id, title, wide] of shown) {
      const v = TL.views[view];
      const body = TL.card(grid, id, title, wide);
      const t0 = performance.now();
      try {
        if (change && v.update && drawn[view] !== undefined) {
          v.update(body, bundle, ctx, change);
          stats.updates[view] = (stats.updates[view] || 0) + 1;
          stats.ms[view] = (stats.ms[view] || 0) + performance.now() - t0;
          continue;
        }
        const key = v.key ? v.key(bundle) : null;
        if (change && key !== null && drawn[view] === key) continue; // its data did not change
        if (!first && !change) await nextFrame(); // first load: paint each plot as it comes
        v.render(body, bundle, ctx);
        drawn[view] = key === null ? "" : key;
        stats.renders[view] = (stats.renders[view] || 0) + 1;
        stats.ms[view] = (stats.ms[view] || 0) + performance.now() - t0;
        first = false;
      } catch (e) { console.error(view, e); TL.note(body, "error", "could not draw: " + e.message); }
    }
    document.body.dataset.ready = "1";
    document.body.dataset.results = String(bundle.campaign.results);
    document.body.dataset.status = bundle.campaign.status;
    document.body.dataset.cursor = String(bundle.cursor);
  }

  async function load(pending) {
    const data = await TL.read(pending);
    if (bundle && data.delta) { stats.delta += 1; return renderAll(merge(data)); }
    stats.full += 1;
    bundle = data;
    indexPoints();
    for (const k of Object.keys(drawn)) delete drawn[k];
    return renderAll(null);
  }

  let inFlight = null, again = false;
  async function refresh(pending) {
    if (embed) { bundle = embed.bundle; indexPoints(); return renderAll(null); }
    if (inFlight) { again = true; return inFlight; }
    inFlight = (async () => {
      try {
        await load(pending || TL.fetch(TL.bundlePath(name, bundle ? bundle.cursor : null)));
        problem.hidden = true;
      } catch (e) {
        problem.textContent = "Could not read the campaign: " + e.message;
        problem.hidden = false;
      }
    })();
    await inFlight;
    inFlight = null;
    if (again) { again = false; return refresh(); }
  }
  ctx.refresh = () => refresh();

  let timer = null;
  function soon() { // many events in a burst: one read
    if (timer) return;
    timer = setTimeout(() => { timer = null; refresh(); }, 150);
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
    const pre = window.TL_PREFETCH || {};
    const who = TL.read(pre.whoami || TL.fetch("/v1/whoami")).catch(() => ({ admin: false }));
    ctx.admin = !!(await who).admin;
    await refresh(pre.bundle);
    listen();
  })();
})();
