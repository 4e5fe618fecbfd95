// The top designs drawn by the prior's kind: an image grid for designs with a spatial shape
// ((C,H,W) or (H,W): pixel and latent priors), parallel coordinates for vectors.
(function () {
  "use strict";
  const TL = window.TL;
  const MAX_IMAGES = 24, MAX_DIMS = 32;

  function isImage(shape) {
    return shape.length >= 2 && shape[shape.length - 1] >= 4 && shape[shape.length - 2] >= 4;
  }

  function drawImage(canvas, flat, shape, lo, hi) {
    const H = shape[shape.length - 2], W = shape[shape.length - 1];
    const C = shape.length >= 3 ? shape[shape.length - 3] : 1;
    canvas.width = W; canvas.height = H;
    const ctx2d = canvas.getContext("2d");
    const img = ctx2d.createImageData(W, H);
    const scale = hi > lo ? 255 / (hi - lo) : 0;
    for (let i = 0; i < H * W; i++) {
      for (let ch = 0; ch < 3; ch++) {
        const c = C >= 3 ? ch : 0; // 1, 2 channels: the first as grey; 3+: the first three as RGB
        img.data[4 * i + ch] = Math.round((flat[c * H * W + i] - lo) * scale);
      }
      img.data[4 * i + 3] = 255;
    }
    ctx2d.putImageData(img, 0, 0);
  }

  TL.views.gallery = {
    key(b) { return JSON.stringify(b.top.map((t) => [t.key, t.value])); },
    render(body, b) {
      const el = TL.el;
      const top = b.top;
      const shape = top.length ? top[0].shape : null;
      // a drawn parallel-coordinates plot is updated in place (a new one costs a WebGL context)
      let div = top.length && !isImage(shape) ? body.querySelector("#gallery-parcoords") : null;
      if (!div) body.textContent = "";
      if (!top.length) { TL.note(body, "count", "no succeeded design yet"); return; }
      if (isImage(shape)) {
        const shown = top.slice(0, MAX_IMAGES);
        let lo = Infinity, hi = -Infinity;
        for (const t of shown) for (const v of t.design) { if (v < lo) lo = v; if (v > hi) hi = v; }
        const grid = el("div", { class: "gallery", id: "gallery-images" });
        for (const t of shown) {
          const canvas = el("canvas", { title: t.key, "data-key": t.key });
          drawImage(canvas, t.design, t.shape, lo, hi);
          grid.append(el("figure", {}, canvas, el("figcaption", { text: TL.fmt(t.value) })));
        }
        body.append(grid);
        TL.note(body, "count", "the best " + shown.length + " designs, shape (" + shape.join(",") + "), one color scale");
        return;
      }
      const d = Math.min(top[0].design.length, MAX_DIMS);
      const dims = [];
      for (let j = 0; j < d; j++) dims.push({ label: "x" + j, values: top.map((t) => t.design[j]) });
      const values = top.map((t) => t.value);
      if (!div) { div = el("div", { class: "plot", id: "gallery-parcoords" }); body.append(div); }
      TL.plot(div, [{ type: "parcoords", dimensions: dims,
        line: { color: values, colorscale: "Viridis", showscale: true, colorbar: { title: { text: b.primary }, thickness: 10 } } }],
        { margin: { l: 40, r: 60, t: 30, b: 20 } });
      TL.note(body, "count", "the best " + top.length + " designs, " + d + " of " + top[0].design.length + " coordinates");
    },
  };
})();
