// Shared helpers of the dashboard's views (one file per view registers in TL.views).
// Text always goes into the DOM as textContent, never as HTML.
(function () {
  "use strict";
  const TL = (window.TL = window.TL || {});
  TL.views = TL.views || {};

  TL.el = function (tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  };

  TL.fmt = function (v, digits) {
    if (v === null || v === undefined || (typeof v === "number" && !isFinite(v))) return "—";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    return Number(v.toPrecision(digits || 4)).toString();
  };

  TL.when = function (iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const s = Math.round((Date.now() - d.getTime()) / 1000);
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return d.toISOString().slice(0, 16).replace("T", " ");
  };

  // fetch a /v1 route with the session cookie; a lost session goes back to the login page
  TL.api = function (path, options) { return TL.read(TL.fetch(path, options)); };

  // the Response of a /v1 route (TL.read gives its body)
  TL.fetch = function (path, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    opts.headers = Object.assign({ "X-Tiltloop-Dashboard": "1", Accept: "application/json" },
                                 opts.headers || {});
    return fetch(path, opts);
  };

  // the JSON body of a fetch (a promise of a Response: also one started early by prefetch.js)
  TL.read = async function (pending) {
    const r = await pending;
    if (r.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      throw new Error("not logged in");
    }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      const err = new Error((body && body.detail) ? String(body.detail) : "HTTP " + r.status);
      err.status = r.status;
      throw err;
    }
    return body;
  };

  // a titled card with a body; `wide` spans the grid
  TL.card = function (parent, id, title, wide) {
    let card = document.getElementById(id);
    if (!card) {
      card = TL.el("section", { id: id, class: "card" + (wide ? " wide" : "") },
                   TL.el("h2", { text: title }), TL.el("div", { class: "body" }));
      parent.append(card);
    }
    return card.querySelector(".body");
  };

  TL.plotDiv = function (body, cls) {
    let div = body.querySelector("." + (cls || "plot"));
    if (!div) { div = TL.el("div", { class: "plot " + (cls || "") }); body.append(div); }
    return div;
  };

  TL.plot = function (div, traces, layout) {
    const base = { margin: { l: 50, r: 16, t: 28, b: 40 }, height: 300, hovermode: "closest",
                   legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, font: { size: 11 },
                   paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fbfcfe" };
    const merged = Object.assign(base, layout || {});
    merged.datarevision = Date.now(); // a view redraws only when its data changed: recompute all
    // the card is in the laid-out grid before its view draws: Plotly measures the right width
    window.Plotly.react(div, traces, merged, { displaylogo: false, responsive: true });
    if (window.TL_FIRST_PLOT_MS === undefined) window.TL_FIRST_PLOT_MS = performance.now();
  };

  TL.note = function (body, cls, text) {
    let p = body.querySelector("p." + cls);
    if (!p) { p = TL.el("p", { class: "note " + cls }); body.append(p); }
    p.textContent = text || "";
    p.hidden = !text;
    return p;
  };

  TL.enc = encodeURIComponent;

  // the campaign page's data routes (prefetch.js starts the first reads before Plotly loads)
  TL.campaignName = function () {
    return decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  };
  TL.bundlePath = function (name, cursor) {
    return "/v1/campaigns/" + TL.enc(name) + "/dashboard" + (cursor === null || cursor === undefined ? "" : "?after=" + cursor);
  };

  // "best so far" as the corners of its step line (shape "hv"): where it changes, and the last x
  TL.bestSteps = function (xs, ys, sign) {
    const bx = [], by = [];
    let best = null;
    for (let i = 0; i < xs.length; i++) {
      if (best === null || sign * ys[i] > sign * best) { best = ys[i]; bx.push(xs[i]); by.push(best); }
    }
    if (bx.length && bx[bx.length - 1] !== xs[xs.length - 1]) { bx.push(xs[xs.length - 1]); by.push(best); }
    return [bx, by];
  };
})();
