// A small hand-written SVG price chart: trade prices over time as a step line with dots.
"use strict";

function priceChart(trades) {
  const W = 560, H = 180, L = 64, R = 10, T = 10, B = 22;
  const svg = bw.svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
                              "aria-label": "trade prices over time" });
  const points = trades.slice().sort((a, b) => a.time - b.time || a.txid - b.txid);
  if (points.length === 0) {
    const t = bw.svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
    t.textContent = "no trades yet";
    svg.append(t);
    return svg;
  }
  let lo = Math.min(...points.map((p) => p.price)), hi = Math.max(...points.map((p) => p.price));
  if (lo === hi) { lo = Math.max(0, lo - 1); hi = hi + 1; }
  const t0 = points[0].time, t1 = points[points.length - 1].time;
  // Few trades (or one burst): space them evenly rather than piling them on one x.
  const byTime = t1 - t0 > 1;
  const x = (p, i) => L + (W - L - R) * (points.length === 1 ? 0.5 :
    byTime ? (p.time - t0) / (t1 - t0) : i / (points.length - 1));
  const y = (price) => T + (H - T - B) * (1 - (price - lo) / (hi - lo));
  for (const [value, label] of [[hi, hi], [(hi + lo) / 2, Math.round((hi + lo) / 2)], [lo, lo]]) {
    svg.append(bw.svg("line", { class: "axis", x1: L, x2: W - R, y1: y(value), y2: y(value) }));
    const t = bw.svg("text", { x: L - 6, y: y(value) + 3, "text-anchor": "end" });
    t.textContent = Number(label).toLocaleString("en-US");
    svg.append(t);
  }
  for (const [time, anchor, xpos] of [[t0, "start", L], [t1, "end", W - R]]) {
    const t = bw.svg("text", { x: xpos, y: H - 6, "text-anchor": anchor });
    t.textContent = bw.time(time).slice(0, 8);
    svg.append(t);
  }
  let d = "";
  points.forEach((p, i) => {
    d += i === 0 ? `M${x(p, i)},${y(p.price)}` : `H${x(p, i)}V${y(p.price)}`;
  });
  svg.append(bw.svg("path", { class: "line", d }));
  points.forEach((p, i) => {
    const dot = bw.svg("circle", { class: "dot", cx: x(p, i), cy: y(p.price), r: 3 });
    const tip = bw.svg("title", {});
    tip.textContent = `#${p.txid}: ${bw.sat(p.price)} at ${bw.time(p.time)}`;
    dot.append(tip);
    svg.append(dot);
  });
  return svg;
}
