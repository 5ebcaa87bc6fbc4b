// Pinring dashboard: reads the REST API of the peer that serves it and
// refreshes every two seconds. No framework, no CDN.
"use strict";

// failed turns an error answer into an Error that carries the API's own
// message (e.g. "the peer is starting: loading a snapshot ...").
async function failed(path, r) {
  let msg = "";
  try { msg = (await r.json()).message || ""; } catch (e) { /* not JSON */ }
  return new Error(msg ? msg + " (" + r.status + ")" : path + ": " + r.status);
}
async function lines(path) {
  const r = await fetch(path, {headers: {Accept: "application/json"}});
  if (!r.ok) throw await failed(path, r);
  const text = await r.text();
  return text.split("\n").filter(l => l.trim() !== "").map(l => JSON.parse(l));
}
async function json(path) {
  const r = await fetch(path);
  if (!r.ok) throw await failed(path, r);
  return r.json();
}
const short = id => id ? "…" + id.slice(-8) : "";
function bytes(n) {
  if (n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; n = Number(n);
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}
function ago(t) {
  if (!t || t.startsWith("0001")) return "–";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(t)) / 1000));
  return s < 60 ? s + "s ago" : Math.round(s / 60) + "m ago";
}
function cell(tr, text, cls) {
  const td = document.createElement("td"); td.textContent = text;
  if (cls) td.className = cls; tr.appendChild(td); return td;
}
function fill(id, rows) {
  const tb = document.querySelector("#" + id + " tbody");
  tb.replaceChildren(...rows);
}

function metricMap(ms) {
  const m = {}; for (const x of ms || []) m[x.peer] = x.value; return m;
}

function drawGraph(g, online) {
  const svg = document.getElementById("graph");
  const ids = Object.keys(g.cluster_links || {}).sort();
  const cx = 200, cy = 150, r = 95, parts = [];
  const pos = {};
  ids.forEach((id, i) => {
    const a = 2 * Math.PI * i / Math.max(ids.length, 1) - Math.PI / 2;
    pos[id] = [cx + r * Math.cos(a), cy + r * Math.sin(a), a];
  });
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; };
  for (const id of ids) {
    for (const to of g.cluster_links[id] || []) {
      if (pos[to]) parts.push(el("line", {x1: pos[id][0], y1: pos[id][1], x2: pos[to][0], y2: pos[to][1]}));
    }
    const k = (g.cluster_to_ipfs || {})[id];
    if (k) {
      const [x, y, a] = pos[id], kx = cx + (r + 40) * Math.cos(a), ky = cy + (r + 40) * Math.sin(a);
      parts.push(el("line", {x1: x, y1: y, x2: kx, y2: ky, class: "kubo"}));
      parts.push(el("circle", {cx: kx, cy: ky, r: 5, class: "kubo"}));
    }
  }
  // Kubo to kubo links, between the kubo dots.
  const kuboAt = {};
  for (const id of ids) {
    const k = (g.cluster_to_ipfs || {})[id];
    if (k) kuboAt[k] = [cx + (r + 40) * Math.cos(pos[id][2]), cy + (r + 40) * Math.sin(pos[id][2])];
  }
  const drawn = new Set();
  for (const [k, tos] of Object.entries(g.ipfs_links || {})) {
    for (const to of tos || []) {
      const pair = k < to ? k + " " + to : to + " " + k;
      if (kuboAt[k] && kuboAt[to] && !drawn.has(pair)) {
        drawn.add(pair);
        parts.push(el("line", {x1: kuboAt[k][0], y1: kuboAt[k][1], x2: kuboAt[to][0], y2: kuboAt[to][1], class: "kubo"}));
      }
    }
  }
  for (const id of ids) {
    const [x, y] = pos[id];
    parts.push(el("circle", {cx: x, cy: y, r: 9, class: "peer" + (online[id] ? "" : " off"), "data-peer": id}));
    const t = el("text", {x: x + 12, y: y + 4}); t.textContent = (g.id_to_peername || {})[id] || short(id);
    parts.push(t);
  }
  svg.replaceChildren(...parts);
}

function pinHealth(g) {
  let pinned = 0, expected = 0, errored = false;
  for (const [id, pi] of Object.entries(g.peer_map || {})) {
    if (pi.status === "remote") continue;
    expected++;
    if (pi.status === "pinned") pinned++;
    if (/error|unexpectedly/.test(pi.status)) errored = true;
  }
  const rank = errored ? 0 : pinned < expected ? 1 : 2;
  return {pinned, expected, errored, rank, label: ["error", "under-replicated", "pinned"][rank], cls: ["error", "under", "ok"][rank]};
}

async function refresh() {
  try {
    const [peers, free, pinnedM, graph, statuses] = await Promise.all([
      lines("/peers"), json("/monitor/metrics/freespace"), json("/monitor/metrics/pinned"),
      json("/health/graph"), lines("/pins")]);
    const freeBy = metricMap(free), pinsBy = metricMap(pinnedM), online = {};
    const self = peers[0] ? peers[0].id : "";
    document.getElementById("cluster").textContent = peers[0] ? (peers[0].cluster || "") + " · seen from " + (peers[0].peername || short(self)) : "";
    fill("peers", peers.map((p, i) => {
      const on = i === 0 || p.connected;
      online[p.id] = on;
      const tr = document.createElement("tr"); tr.dataset.peer = p.id;
      cell(tr, (p.peername || "") + " " + short(p.id), "mono");
      cell(tr, on ? "online" : "offline", on ? "online" : "offline").dataset.state = on ? "online" : "offline";
      cell(tr, p.role || "");
      cell(tr, p.admission || "").dataset.admission = p.admission || "";
      const audit = p.audit || "";
      const ac = cell(tr, audit || "–", audit.startsWith("FAILING") ? "error" : "");
      ac.dataset.audit = audit.startsWith("FAILING") ? "failing" : audit.startsWith("not verified") ? "unverified" : audit ? "verified" : "none";
      cell(tr, bytes(freeBy[p.id]));
      cell(tr, pinsBy[p.id] === undefined ? "–" : pinsBy[p.id]);
      cell(tr, i === 0 ? "this peer" : ago(p.last_seen));
      return tr;
    }));
    drawGraph(graph, online);
    // The store's size: /health/report answers 503 (with the report) when
    // kubo is down, so it is read apart.
    fetch("/health/report").then(r => r.json()).then(h => {
      const s = h.store || {}, el = document.getElementById("store");
      let txt = s.bytes >= 0 ? "store " + bytes(s.bytes) + " · epoch " + (s.epoch || 0) + " · history height " + s.height : "";
      if (txt && s.history >= 0) txt += " · " + s.history + " history entries for " + s.live + " live";
      if (txt && s.last_drop) txt += " · old epoch dropped " + new Date(s.last_drop).toLocaleString();
      el.textContent = txt;
      if (s.bytes >= 0) el.dataset.bytes = s.bytes;
      el.dataset.epoch = s.epoch || 0;
    }).catch(() => {});
    const plain = statuses.filter(g => g.type !== "shard-pin" && g.type !== "meta-pin");
    const rows = plain.map(g => ({g, h: pinHealth(g)})).sort((a, b) => a.h.rank - b.h.rank);
    const counts = [0, 0, 0]; for (const r of rows) counts[r.h.rank]++;
    document.getElementById("pinsummary").textContent =
      rows.length + " pins: " + counts[2] + " pinned, " + counts[1] + " under-replicated, " + counts[0] + " with errors";
    fill("pins", rows.map(({g, h}) => {
      const tr = document.createElement("tr"); tr.dataset.cid = g.cid;
      cell(tr, h.label, h.cls).dataset.health = h.label;
      cell(tr, g.cid, "mono"); cell(tr, g.name || "");
      cell(tr, h.pinned + "/" + h.expected);
      cell(tr, Object.entries(g.peer_map || {}).filter(([, pi]) => pi.status !== "remote")
        .map(([id, pi]) => (pi.peername || short(id)) + ": " + pi.status).join(", "));
      return tr;
    }));
    const shardsOf = {};
    for (const g of statuses.filter(g => g.type === "shard-pin")) {
      const ref = g.reference || ""; const ok = Object.values(g.peer_map || {}).some(pi => pi.status === "pinned");
      (shardsOf[ref] = shardsOf[ref] || []).push(ok);
    }
    fill("ec", statuses.filter(g => g.type === "meta-pin").map(g => {
      const md = g.metadata || {}, k = Number(md["ec.data-shards"]), m = Number(md["ec.parity-shards"]);
      const s = shardsOf[g.cid] || [], ok = s.filter(Boolean).length;
      const label = ok === k + m ? "healthy" : ok >= k ? "degraded" : "unreadable";
      const tr = document.createElement("tr"); tr.dataset.cid = g.cid;
      cell(tr, label, label === "healthy" ? "ok" : label === "degraded" ? "under" : "error");
      cell(tr, g.cid, "mono"); cell(tr, g.name || ""); cell(tr, k + "+" + m); cell(tr, ok + "/" + (k + m));
      return tr;
    }));
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.ready = "1";
  } catch (e) {
    document.getElementById("updated").textContent = "error: " + e.message;
  }
}
refresh();
setInterval(refresh, 2000);
