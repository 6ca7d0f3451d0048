// timebucket dashboard: polls /api/windows every second and draws the
// windows as SVG charts. No libraries, nothing loaded from elsewhere.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function svgEl(name, attrs, parent) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function utc(seconds, withDate) {
  const iso = new Date(seconds * 1000).toISOString();
  return withDate ? iso.slice(0, 10) + " " + iso.slice(11, 16) : iso.slice(11, 19);
}

const num = (n) => n.toLocaleString("en-US");

// The smallest 1, 2 or 5 times a power of ten at or above v.
function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// rows: [{start, value}]; kind: "bar" or "line".
function chart(svg, rows, kind, color, label) {
  const W = 1100, H = svg.viewBox.baseVal.height;
  const m = { l: 58, r: 12, t: 10, b: 24 };
  svg.replaceChildren();
  if (!rows.length) {
    svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no windows yet";
    return;
  }
  const max = niceMax(Math.max(...rows.map((r) => r.value)));
  const step = (W - m.l - m.r) / rows.length;
  const x = (i) => m.l + (i + 0.5) * step;
  const y = (v) => H - m.b - (v / max) * (H - m.t - m.b);
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svgEl("line", { class: "grid", x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }, svg);
    svgEl("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = num(v);
  }
  const every = Math.max(1, Math.ceil(rows.length / 10));
  rows.forEach((r, i) => {
    if (i % every === 0) {
      svgEl("text", { x: x(i), y: H - 6, "text-anchor": "middle" }, svg).textContent = label(r.start);
    }
  });
  if (kind === "bar") {
    const w = Math.max(1, step * 0.8);
    rows.forEach((r, i) => {
      const bar = svgEl("rect", { x: x(i) - w / 2, y: y(r.value), width: w, height: y(0) - y(r.value), fill: color, rx: 1 }, svg);
      svgEl("title", {}, bar).textContent = `${utc(r.start, true)} UTC: ${num(r.value)}`;
    });
  } else {
    const pts = rows.map((r, i) => `${x(i).toFixed(1)},${y(r.value).toFixed(1)}`);
    svgEl("polygon", { points: `${x(0)},${y(0)} ${pts.join(" ")} ${x(rows.length - 1)},${y(0)}`, fill: color, opacity: 0.18 }, svg);
    svgEl("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 1.6 }, svg);
  }
}

function render(d) {
  const minutes = d.minutes;
  const latest = minutes[minutes.length - 1];
  if (latest) {
    $("latest-minute-users").textContent = String(latest.users);
    $("latest-minute-users").dataset.start = String(latest.start);
    $("latest-minute-start").textContent = utc(latest.start, true) + " UTC";
    $("latest-minute-frames").textContent = String(latest.frames);
  }
  $("frames-total").textContent = num(d.frames);
  $("minute-windows").textContent = String(d.minute_windows);
  $("invalid-total").textContent = String(d.invalid);
  $("invalid-reasons").textContent = Object.entries(d.invalid_reasons)
    .map(([k, v]) => `${k} ${v}`)
    .join(" \u00b7 ");
  $("late-total").textContent = d.late_topic ? String(d.late_seconds) : "n/a";
  $("late-second").textContent = String(d.late_seconds);
  $("late-minute").textContent = String(d.late_minutes);
  $("late-detail").hidden = !d.late_topic;
  $("late-note").textContent = d.late_topic ? "" : "no late topic given (--late-topic)";

  chart($("users-chart"), minutes.map((r) => ({ start: r.start, value: r.users })), "bar", "var(--users)", (s) => utc(s).slice(0, 5));
  chart($("frames-chart"), d.seconds.map((r) => ({ start: r.start, value: r.frames })), "line", "var(--frames)", (s) => utc(s));

  const body = $("minutes-table").tBodies[0];
  body.replaceChildren();
  for (const r of minutes.slice(-8).reverse()) {
    const tr = body.insertRow();
    for (const v of [utc(r.start, true), r.start, num(r.users), num(r.frames)]) tr.insertCell().textContent = v;
  }
  $("topics").textContent = "read_committed from " + Object.entries(d.topics).map(([k, v]) => `${k}: ${v}`).join(", ");
}

async function refresh() {
  const status = $("status");
  try {
    const response = await fetch("/api/windows", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const d = await response.json();
    render(d);
    status.className = "ok";
    status.textContent = `live: ${num(d.records)} records read` +
      (d.updated_ms ? `, last at ${new Date(d.updated_ms).toISOString().slice(11, 19)} UTC` : "");
  } catch (e) {
    status.className = "down";
    status.textContent = `no data: ${e.message}`;
  }
}

refresh();
setInterval(refresh, 1000);
