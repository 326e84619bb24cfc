// featcli --html: hover a map for its position and value (and the input pixels that output sees), click to enlarge.
// Each figure.map carries its values as base64 float16 (little-endian), divided by 2**data-e, row-major
// at the display size data-w x data-h; the full map is data-fw x data-fh.
"use strict";
(function () {
  const cache = new WeakMap();
  function half(h) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return s * f * Math.pow(2, -24);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * (1 + f / 1024) * Math.pow(2, e - 15);
  }
  function values(fig) {
    let v = cache.get(fig);
    if (!v) {
      const bin = atob(fig.dataset.v), n = bin.length >> 1, k = Math.pow(2, Number(fig.dataset.e));
      v = new Float64Array(n);
      for (let i = 0; i < n; i++) v[i] = half(bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8)) * k;
      cache.set(fig, v);
    }
    return v;
  }
  function fmt(v) {
    if (Number.isNaN(v)) return "NaN";
    if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
    return String(Number(v.toPrecision(3)));
  }
  function span(a, b) { return a === b ? String(a) : a + "–" + b; }
  function at(fig, img, ev) {
    const d = fig.dataset, w = +d.w, h = +d.h, fw = +d.fw, fh = +d.fh;
    const r = img.getBoundingClientRect();
    const x = Math.min(w - 1, Math.max(0, Math.floor((ev.clientX - r.left) / r.width * w)));
    const y = Math.min(h - 1, Math.max(0, Math.floor((ev.clientY - r.top) / r.height * h)));
    const r0 = Math.floor(y * fh / h), r1 = Math.max(r0, Math.floor((y + 1) * fh / h) - 1);
    const c0 = Math.floor(x * fw / w), c1 = Math.max(c0, Math.floor((x + 1) * fw / w) - 1);
    return { v: values(fig)[y * w + x], r0: r0, r1: r1, c0: c0, c1: c1 };
  }
  function field(fig, p) {
    const d = fig.dataset;
    if (!d.rf || !d.in) return null;
    const q = d.rf.split(",").map(Number);  // top0, left0, jump_y, jump_x, rf_h, rf_w
    return { top: q[0] + p.r0 * q[2], left: q[1] + p.c0 * q[3], bottom: q[0] + p.r1 * q[2] + q[4],
             right: q[1] + p.c1 * q[3] + q[5] };
  }
  function show(fig, img, ev, out) {
    const p = at(fig, img, ev), b = field(fig, p);
    const where = p.r0 === p.r1 && p.c0 === p.c1 ? "(" + p.r0 + ", " + p.c0 + ")"
      : "(" + span(p.r0, p.r1) + ", " + span(p.c0, p.c1) + ") peak";
    let text = fig.dataset.label + " " + where + " = " + fmt(p.v);
    if (b) text += " · sees input rows " + b.top + "–" + (b.bottom - 1) + ", cols " + b.left + "–" + (b.right - 1);
    out.textContent = text;
    const box = b && document.getElementById(fig.dataset.in);
    if (box) {
      const rf = box.querySelector(".rf"), ih = +box.dataset.h, iw = +box.dataset.w;
      rf.style.display = "block";
      rf.style.top = (100 * b.top / ih) + "%"; rf.style.left = (100 * b.left / iw) + "%";
      rf.style.height = (100 * (b.bottom - b.top) / ih) + "%"; rf.style.width = (100 * (b.right - b.left) / iw) + "%";
    }
  }
  function hide(fig) {
    const box = fig.dataset.in && document.getElementById(fig.dataset.in);
    if (box) box.querySelector(".rf").style.display = "none";
  }
  const zoom = document.getElementById("zoom"), zimg = zoom.querySelector("img"), zval = zoom.querySelector(".val");
  let zfig = null;
  document.querySelectorAll("figure.map").forEach(function (fig) {
    const img = fig.querySelector("img"), out = fig.querySelector(".val");
    img.addEventListener("mousemove", function (ev) { show(fig, img, ev, out); });
    img.addEventListener("mouseleave", function () { hide(fig); });
    img.addEventListener("click", function () {
      zfig = fig; zimg.src = img.src; zimg.alt = img.alt; zval.textContent = fig.dataset.label;
      zoom.classList.add("on");
    });
  });
  zimg.addEventListener("mousemove", function (ev) { if (zfig) show(zfig, zimg, ev, zval); });
  zoom.addEventListener("click", function (ev) { if (ev.target !== zimg) { zoom.classList.remove("on"); if (zfig) hide(zfig); } });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") zoom.classList.remove("on"); });
  window.featcliReady = true;
})();
