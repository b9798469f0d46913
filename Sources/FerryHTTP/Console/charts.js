// Ferry console: small SVG charts drawn by hand (no library).
"use strict";

const PALETTE = ["#1f6feb", "#1a7f37", "#cf222e", "#9a6700", "#8250df", "#0a7ea4", "#bf3989", "#57606a"];

function svg(tag, attributes = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function legend(names, colors = PALETTE) {
  const box = el("div", { class: "legend" });
  names.forEach((name, index) => {
    const swatch = el("i");
    swatch.style.background = colors[index % colors.length];
    box.append(el("span", {}, swatch, name));
  });
  return box;
}

// series: [{name, points: [{x: Date, y: number|null}]}]; format(y) labels the axis.
function lineChart(container, series, { format = String, minY = 0, maxY = null, height = 180 } = {}) {
  container.replaceChildren();
  const width = 380, left = 66, right = 10, top = 10, bottom = 24;
  const points = series.flatMap(s => s.points).filter(p => p.y != null);
  if (points.length === 0) { container.append(el("p", { class: "muted" }, "no data in this window")); return; }
  const xs = series.flatMap(s => s.points.map(p => p.x.getTime()));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const top1 = maxY ?? (Math.max(...points.map(p => p.y)) * 1.1 || 1);
  const X = x => left + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (width - left - right);
  const Y = y => top + (1 - (y - minY) / (top1 - minY)) * (height - top - bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img" });
  for (let i = 0; i <= 4; i++) {
    const value = minY + (top1 - minY) * i / 4;
    chart.append(svg("line", { x1: left, x2: width - right, y1: Y(value), y2: Y(value), stroke: "#e6eaf0" }));
    const label = svg("text", { x: left - 6, y: Y(value) + 4, "text-anchor": "end" });
    label.textContent = format(value);
    chart.append(label);
  }
  for (const [x, anchor] of [[x0, "start"], [x1, "end"]]) {
    const label = svg("text", { x: X(x), y: height - 6, "text-anchor": anchor });
    label.textContent = new Date(x).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    chart.append(label);
  }
  series.forEach((s, index) => {
    const color = PALETTE[index % PALETTE.length];
    let path = "", pen = false;
    for (const p of s.points) {
      if (p.y == null) { pen = false; continue; }
      path += `${pen ? "L" : "M"}${X(p.x.getTime()).toFixed(1)},${Y(p.y).toFixed(1)}`;
      pen = true;
      chart.append(svg("circle", { cx: X(p.x.getTime()), cy: Y(p.y), r: 2.5, fill: color }));
    }
    chart.append(svg("path", { d: path, fill: "none", stroke: color, "stroke-width": 2 }));
  });
  container.append(chart, legend(series.map(s => s.name)));
}

// bars: [{name, segments: [{value}]}] stacked horizontally (e.g. completed / failed / open),
// in `colors` (one per segment name).
function barChart(container, bars, segmentNames, colors = PALETTE) {
  container.replaceChildren();
  if (bars.length === 0) { container.append(el("p", { class: "muted" }, "no data in this window")); return; }
  const width = 380, row = 22, left = 90, height = bars.length * row + 8;
  const total = Math.max(...bars.map(b => b.segments.reduce((sum, s) => sum + s.value, 0)), 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img" });
  bars.forEach((bar, index) => {
    const y = 4 + index * row;
    const name = svg("text", { x: left - 6, y: y + 13, "text-anchor": "end" });
    name.textContent = bar.name;
    chart.append(name);
    let x = left;
    bar.segments.forEach((segment, s) => {
      const w = segment.value / total * (width - left - 40);
      chart.append(svg("rect", { x, y, width: Math.max(w, 0), height: row - 6, fill: colors[s % colors.length] }));
      x += w;
    });
    const count = svg("text", { x: x + 4, y: y + 13 });
    count.textContent = bar.segments.reduce((sum, s) => sum + s.value, 0);
    chart.append(count);
  });
  container.append(chart, legend(segmentNames, colors));
}
