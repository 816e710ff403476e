// Hand-written SVG charts: line, bars, grouped bars, meters and the lineage graph. Colours
// come from classes in app.css (no inline styles: the CSP forbids them); every mark carries
// a <title> so hovering it shows the exact figure.

import { h, s } from "./dom.js";

const PAD = { l: 58, r: 14, t: 14, b: 30 };

function ticks(min, max, count) {
  if (max <= min) return [min];
  const raw = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((x) => x >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function frame(width, height, label) {
  return s("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": label,
    preserveAspectRatio: "xMidYMid meet",
  });
}

function yAxis(svg, y, values, format, width) {
  for (const v of values) {
    const py = y(v);
    svg.appendChild(s("line", { x1: PAD.l, x2: width - PAD.r, y1: py, y2: py, class: "grid" }));
    svg.appendChild(s("text", { x: PAD.l - 6, y: py + 4, class: "tick", "text-anchor": "end" }, format(v)));
  }
}

function legend(series) {
  return h(
    "ul",
    { class: "legend" },
    series.map((x, i) => h("li", null, h("span", { class: ["swatch", x.cls || `series-${i}`] }), x.name)),
  );
}

function figureOf(svg, caption, series, testid) {
  return h(
    "figure",
    { class: "chart-box", testid },
    svg,
    series && series.length > 1 ? legend(series) : null,
    caption ? h("figcaption", null, caption) : null,
  );
}

/**
 * Lines over time. series: [{name, cls?, points: [{x, y}]}] (y null = no data: a gap).
 */
export function lineChart({ series, width = 640, height = 210, yMin, yMax, yFormat = String, xFormat = String, caption, testid }) {
  const svg = frame(width, height, caption || "line chart");
  const all = series.flatMap((x) => x.points);
  const ys = all.map((p) => p.y).filter((y) => y !== null && y !== undefined);
  const xs = all.map((p) => p.x);
  if (!xs.length) return figureOf(svg, caption, series, testid);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  let lo = yMin ?? (ys.length ? Math.min(...ys) : 0);
  let hi = yMax ?? (ys.length ? Math.max(...ys) : 1);
  if (hi <= lo) {
    hi = lo + (Math.abs(lo) || 1) * 0.1;
    lo -= (Math.abs(lo) || 1) * 0.1;
  }
  const x = (v) => PAD.l + ((v - x0) / (x1 - x0 || 1)) * (width - PAD.l - PAD.r);
  const y = (v) => height - PAD.b - ((v - lo) / (hi - lo)) * (height - PAD.t - PAD.b);
  yAxis(svg, y, ticks(lo, hi, 4), yFormat, width);
  const xt = ticks(x0, x1, 6);
  for (const v of xt) {
    svg.appendChild(s("text", { x: x(v), y: height - 10, class: "tick", "text-anchor": "middle" }, xFormat(v)));
  }
  series.forEach((line, i) => {
    const cls = line.cls || `series-${i}`;
    let d = "";
    let pen = false;
    for (const p of line.points) {
      if (p.y === null || p.y === undefined) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`;
      pen = true;
    }
    if (d) svg.appendChild(s("path", { d, class: ["line", cls] }));
    for (const p of line.points) {
      if (p.y === null || p.y === undefined) continue;
      svg.appendChild(
        s("circle", { cx: x(p.x), cy: y(p.y), r: 2.2, class: ["dot", cls] }, s("title", null, `${line.name} ${xFormat(p.x)}: ${yFormat(p.y)}`)),
      );
    }
  });
  return figureOf(svg, caption, series, testid);
}

/** Vertical bars: bars [{label, value, cls?, title?}]; every `labelEvery`-th label shown. */
export function barChart({ bars, width = 640, height = 210, yFormat = String, caption, testid, labelEvery = 1 }) {
  const svg = frame(width, height, caption || "bar chart");
  const hi = Math.max(1, ...bars.map((b) => b.value || 0));
  const scale = ticks(0, hi, 4);
  const top = Math.max(hi, scale[scale.length - 1]);
  const y = (v) => height - PAD.b - (v / top) * (height - PAD.t - PAD.b);
  yAxis(svg, y, scale, yFormat, width);
  const slot = (width - PAD.l - PAD.r) / Math.max(1, bars.length);
  bars.forEach((b, i) => {
    const bx = PAD.l + i * slot + slot * 0.12;
    const v = b.value || 0;
    svg.appendChild(
      s(
        "rect",
        { x: bx, y: y(v), width: Math.max(1, slot * 0.76), height: Math.max(0, y(0) - y(v)), class: ["bar", b.cls || "series-0"] },
        s("title", null, b.title || `${b.label}: ${yFormat(v)}`),
      ),
    );
    if (i % labelEvery === 0) {
      svg.appendChild(s("text", { x: bx + slot * 0.38, y: height - 10, class: "tick", "text-anchor": "middle" }, b.label));
    }
  });
  return figureOf(svg, caption, null, testid);
}

/**
 * Groups of bars side by side: groups [{label, values: [..]}], series [{name, cls?}].
 */
export function groupedBars({ groups, series, width = 640, height = 220, yFormat = String, caption, testid, rotate = false }) {
  const bottom = rotate ? 70 : PAD.b;
  const svg = frame(width, height, caption || "grouped bar chart");
  const values = groups.flatMap((g) => g.values.map((v) => v || 0));
  const hi = Math.max(...values, 0) || 1;
  const scale = ticks(0, hi, 4);
  const top = Math.max(hi, scale[scale.length - 1]);
  const y = (v) => height - bottom - (v / top) * (height - PAD.t - bottom);
  yAxis(svg, y, scale, yFormat, width);
  const slot = (width - PAD.l - PAD.r) / Math.max(1, groups.length);
  const bar = (slot * 0.8) / Math.max(1, series.length);
  groups.forEach((g, i) => {
    const gx = PAD.l + i * slot + slot * 0.1;
    g.values.forEach((v, j) => {
      const value = v || 0;
      svg.appendChild(
        s(
          "rect",
          { x: gx + j * bar, y: y(value), width: Math.max(1, bar - 1), height: Math.max(0, y(0) - y(value)), class: ["bar", series[j].cls || `series-${j}`] },
          s("title", null, `${g.label} — ${series[j].name}: ${yFormat(value)}`),
        ),
      );
    });
    const lx = gx + slot * 0.4;
    const ly = height - bottom + 14;
    svg.appendChild(
      s(
        "text",
        rotate
          ? { x: lx, y: ly, class: "tick", "text-anchor": "end", transform: `rotate(-35 ${lx} ${ly})` }
          : { x: lx, y: height - 10, class: "tick", "text-anchor": "middle" },
        g.label,
      ),
    );
  });
  return figureOf(svg, caption, series, testid);
}

/** A horizontal meter for a share in [0, 1] (values outside are clamped for drawing). */
export function meter(value, { label, testid, width = 160, good = 0.5, warn = 0.2 } = {}) {
  const svg = s("svg", { viewBox: `0 0 ${width} 12`, class: "meter", role: "img", "aria-label": label || "meter" });
  const share = value === null || value === undefined ? 0 : Math.max(0, Math.min(1, value));
  const cls = value === null || value === undefined ? "meter-none" : share >= good ? "meter-good" : share >= warn ? "meter-warn" : "meter-bad";
  svg.appendChild(s("rect", { x: 0, y: 0, width, height: 12, rx: 3, class: "meter-track" }));
  svg.appendChild(s("rect", { x: 0, y: 0, width: width * share, height: 12, rx: 3, class: cls }, s("title", null, label || "")));
  return h("span", { class: "meter-box", testid, "data-value": value === null || value === undefined ? "" : String(value) }, svg);
}

/** The lineage graph: datasets → model versions → endpoints, in three columns. */
export function lineageGraph({ nodes, edges }, { testid } = {}) {
  const columns = { dataset: [], version: [], endpoint: [] };
  for (const n of nodes) (columns[n.kind] || columns.version).push(n);
  for (const list of Object.values(columns)) list.sort((a, b) => String(a.label).localeCompare(String(b.label), "en", { numeric: true }));
  const boxW = 190;
  const boxH = 30;
  const gapY = 14;
  const colX = { dataset: 20, version: 330, endpoint: 640 };
  const rows = Math.max(1, ...Object.values(columns).map((c) => c.length));
  const width = 860;
  const height = 40 + rows * (boxH + gapY);
  const place = {};
  for (const [kind, list] of Object.entries(columns)) {
    const offset = ((rows - list.length) * (boxH + gapY)) / 2;
    list.forEach((n, i) => {
      place[n.id] = { x: colX[kind], y: 30 + offset + i * (boxH + gapY) };
    });
  }
  const svg = frame(width, height, "lineage graph from datasets to endpoints");
  for (const [kind, x] of Object.entries(colX)) {
    svg.appendChild(s("text", { x: x + boxW / 2, y: 16, class: "column-title", "text-anchor": "middle" }, `${kind}s`));
  }
  for (const e of edges) {
    const a = place[e.from];
    const b = place[e.to];
    if (!a || !b) continue;
    const x1 = a.x + boxW;
    const y1 = a.y + boxH / 2;
    const x2 = b.x;
    const y2 = b.y + boxH / 2;
    const mx = (x1 + x2) / 2;
    svg.appendChild(s("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: ["edge", `edge-${e.label}`] }, s("title", null, e.label)));
    svg.appendChild(s("text", { x: mx, y: (y1 + y2) / 2 - 4, class: "edge-label", "text-anchor": "middle" }, e.label));
  }
  for (const n of nodes) {
    const p = place[n.id];
    const detail = n.classification || n.status || n.state || "";
    const g = s("g", { class: ["node", `node-${n.kind}`], testid: "lineage-node", "data-kind": n.kind, "data-label": n.label });
    g.appendChild(s("rect", { x: p.x, y: p.y, width: boxW, height: boxH, rx: 5 }));
    g.appendChild(s("text", { x: p.x + 8, y: p.y + 19, class: "node-label" }, n.label));
    if (detail) g.appendChild(s("text", { x: p.x + boxW - 8, y: p.y + 19, class: "node-detail", "text-anchor": "end" }, detail));
    g.appendChild(s("title", null, `${n.kind} ${n.label}${detail ? ` (${detail})` : ""}`));
    svg.appendChild(g);
  }
  return h("figure", { class: "chart-box lineage", testid }, svg);
}
