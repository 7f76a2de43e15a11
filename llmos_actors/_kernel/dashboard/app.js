// The llmos live dashboard: state arrives as server-sent events from /api/events once a second;
// the browser keeps the last POINTS values per actor for the sparklines. Plain DOM + inline SVG.
"use strict";

const POINTS = 60;
const history = new Map(); // actor id -> {t, calls, series: {calls: [], queue: [], cpu: []}}
let admin = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function spark(values, width = 90, height = 18) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1e-9, ...values);
  const step = width / Math.max(1, POINTS - 1);
  const offset = POINTS - values.length;
  const pts = values.map((v, i) => `${((offset + i) * step).toFixed(1)},${(height - 1 - (v / max) * (height - 2)).toFixed(1)}`);
  const base = document.createElementNS(ns, "rect");
  base.setAttribute("width", width);
  base.setAttribute("height", height);
  svg.append(base);
  if (pts.length) {
    const area = document.createElementNS(ns, "polygon");
    const x0 = (offset * step).toFixed(1);
    area.setAttribute("points", `${x0},${height} ${pts.join(" ")} ${((POINTS - 1) * step).toFixed(1)},${height}`);
    svg.append(area);
  }
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(line);
  const title = document.createElementNS(ns, "title");
  title.textContent = values.length ? `now ${fmt(values[values.length - 1])}, max ${fmt(max)}` : "";
  svg.append(title);
  return svg;
}

function fmt(n) {
  if (n == null || Number.isNaN(n)) return "";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function push(list, value) {
  list.push(value);
  if (list.length > POINTS) list.shift();
}

function record(state) {
  const now = state.time;
  const seen = new Set();
  for (const a of state.actors) {
    seen.add(a.id);
    let h = history.get(a.id);
    if (!h) { h = { t: now, calls: a.stats.calls, series: { calls: [], queue: [], cpu: [] } }; history.set(a.id, h); }
    const dt = now - h.t;
    if (dt > 0) push(h.series.calls, a.state === "exited" ? 0 : Math.max(0, (a.stats.calls - h.calls) / dt));
    h.t = now;
    h.calls = a.stats.calls;
    push(h.series.queue, a.stats.queued || 0);
    push(h.series.cpu, a.cpu_percent || 0);
  }
  for (const id of history.keys()) if (!seen.has(id)) history.delete(id);
}

async function act(action, target) {
  if (!confirm(`${action} ${target}?`)) return;
  const r = await fetch(`/api/actors/${encodeURIComponent(target)}/${action}`, { method: "POST", headers: { "X-Llmos-Action": "1" } });
  if (!r.ok) alert(`${action} ${target}: ${r.status} ${await r.text()}`);
}

function renderActors(state) {
  const body = document.querySelector("#actors tbody");
  const rows = state.actors.map((a) => {
    const h = history.get(a.id) || { series: { calls: [], queue: [], cpu: [] } };
    const label = a.name || a.id;
    const tr = el("tr", { "data-actor": label, "data-state": a.state, class: a.state === "exited" ? "exited" : "" },
      el("td", {}, label), el("td", {}, a.id), el("td", {}, a.cls),
      el("td", { class: `state-${a.state}` }, a.state),
      el("td", { class: "num" }, a.pid ?? ""), el("td", { class: "num" }, a.core ?? ""),
      el("td", { class: "num" }, a.priority), el("td", { class: "num" }, a.nice),
      el("td", { class: "num" }, a.restarts),
      el("td", {}, spark(h.series.calls), " ", fmt(h.series.calls[h.series.calls.length - 1] || 0)),
      el("td", {}, spark(h.series.queue), " ", a.stats.queued),
      el("td", {}, spark(h.series.cpu), " ", fmt(a.cpu_percent || 0)),
      el("td", { class: "num" }, bytes(a.rss)),
      el("td", {}, a.sched || ""));
    const actions = el("td", { class: "admin-only" });
    if (admin && a.state !== "exited") {
      actions.append(el("button", { onclick: () => act("kill", label) }, "kill"),
        el("button", { onclick: () => act("restart", label) }, "restart"));
    }
    tr.append(actions);
    return tr;
  });
  body.replaceChildren(...rows);
  const counts = Object.entries(state.daemon.counts).map(([k, v]) => `${v} ${k}`).join(", ");
  document.getElementById("counts").textContent = `${counts}${state.actors_total > state.actors.length ? ` (showing ${state.actors.length})` : ""}`;
}

function renderTree(state) {
  const byParent = new Map();
  for (const s of state.supervisors) {
    const key = s.parent || "";
    if (!byParent.has(key)) byParent.set(key, []);
    byParent.get(key).push(s);
  }
  const actorsOf = new Map();
  for (const a of state.actors) {
    if (a.state === "exited") continue;
    const key = a.supervisor || "";
    if (!actorsOf.has(key)) actorsOf.set(key, []);
    actorsOf.get(key).push(a);
  }
  function branch(parentId) {
    const ul = el("ul");
    for (const s of byParent.get(parentId) || []) {
      ul.append(el("li", { "data-supervisor": s.name || s.id },
        `▾ ${s.name || s.id} (${s.strategy}, ${s.state}, ${s.restarts} restarts)`, branch(s.id)));
    }
    for (const a of actorsOf.get(parentId) || []) {
      ul.append(el("li", {}, `• ${a.name || a.id} `, el("span", { class: `state-${a.state}` }, a.state)));
    }
    return ul;
  }
  const tree = document.getElementById("tree");
  tree.replaceChildren(...branch("").childNodes);
}

function dl(pairs) {
  const d = el("dl");
  for (const [k, v] of pairs) d.append(el("dt", {}, k), el("dd", {}, v));
  return d;
}

function renderPages(p) {
  const box = document.getElementById("pages");
  if (!p || !p.pool_bytes) { box.textContent = "off"; return; }
  const used = p.used_bytes || 0;
  const bar = el("div", { class: "bar" }, el("div"));
  bar.firstChild.style.width = `${Math.min(100, (100 * used) / p.pool_bytes).toFixed(1)}%`;
  box.className = "";
  box.replaceChildren(bar, dl([
    ["used", `${bytes(used)} of ${bytes(p.pool_bytes)}`], ["free", bytes(p.pool_bytes - used)],
    ["holders", p.holders], ["transfers", p.transfers], ["objects", p.objects],
    ["spills / restores", `${p.spills || 0} / ${p.restores || 0}`],
  ]));
}

function renderTopics(t) {
  const box = document.getElementById("topics");
  const slow = (t.slowest || []).map((s) => el("li", {}, `${s.who}: ${s.delivered} delivered, ${s.dropped} dropped`));
  box.replaceChildren(dl([["subscribers", t.subscribers], ["published", t.published], ["delivered", t.delivered], ["dropped", t.dropped]]),
    slow.length ? el("ul", {}, ...slow) : "");
}

function renderSync(s) {
  const box = document.getElementById("sync");
  const objects = Object.entries(s.objects || {}).map(([k, v]) => `${v} ${k}`).join(", ") || "none";
  const waits = (s.waits || []).map((w) => el("li", {}, `${w.waiter} waits on ${w.on}${w.held_by ? ` held by ${w.held_by}` : ""}`));
  box.replaceChildren(dl([["objects", objects], ["waiting", waits.length], ["deadlocks broken", s.deadlocks_detected]]),
    waits.length ? el("ul", {}, ...waits) : "");
}

function renderDecisions(d) {
  const body = document.querySelector("#decisions tbody");
  const rows = d.decisions.slice().reverse().map((x) =>
    el("tr", {}, el("td", {}, new Date(x.time * 1000).toLocaleTimeString()), el("td", {}, x.action), el("td", {}, x.target), el("td", {}, x.reason)));
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "4", class: "muted" }, "none yet"))]));
}

function renderLLM(state) {
  const box = document.getElementById("llm");
  const devices = state.actors.filter((a) => a.llm && a.state !== "exited");
  if (!devices.length) { box.className = "muted"; box.textContent = "none"; return; }
  box.className = "";
  box.replaceChildren(...devices.map((a) => {
    const m = a.llm;
    const total = (m.kv_blocks_used || 0) + (m.kv_blocks_free || 0);
    const bar = el("div", { class: "bar" }, el("div"));
    bar.firstChild.style.width = total ? `${((100 * (m.kv_blocks_used || 0)) / total).toFixed(1)}%` : "0%";
    const rows = [
      ["batch", m.batch_size], ["running", m.running], ["waiting", m.waiting],
      ["KV blocks", total ? `${m.kv_blocks_used} used of ${total}` : null], ["tokens", m.tokens_total],
      ["tokens/s", m.tokens_per_second], ["preemptions", m.preemptions_total], ["prefix-cache hits", m.prefix_cache_hits_total],
    ].filter(([, v]) => v != null);
    return el("div", { "data-llm": a.name || a.id }, el("strong", {}, a.name || a.id), bar, dl(rows));
  }));
}

function render(state) {
  admin = !!state.admin;
  document.body.classList.toggle("admin", admin);
  record(state);
  const d = state.daemon;
  document.getElementById("daemon").textContent =
    `daemon ${d.version}, pid ${d.pid}, up ${Math.round(d.uptime)} s, loop lag ${(1000 * (d.loop_lag || 0)).toFixed(1)} ms, ${d.runtime_dir}`;
  renderActors(state);
  renderTree(state);
  renderPages(state.pages);
  renderTopics(state.topics);
  renderSync(state.sync);
  renderDecisions(state.scheduler);
  renderLLM(state);
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.onopen = () => { live.textContent = "live"; live.className = "badge on"; };
  source.onmessage = (event) => render(JSON.parse(event.data));
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "badge off"; };
}

connect();
