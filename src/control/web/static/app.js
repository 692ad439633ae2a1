// The dashboard page: one EventSource to /api/events, and everything drawn from its snapshots.
// Text from masq (notes, addresses) is only ever set as textContent, never parsed as HTML.

const CHART_SERIES = 6;
const COLOURS = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#ad1457"];
const $ = (id) => document.getElementById(id);

const state = {
  history: [],
  snapshot: null,
  sort: { key: "", dir: 1 },
  csrf: undefined,
  charts: {},
};

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells)
    tr.append(c instanceof HTMLTableCellElement ? c : c instanceof Node ? tdOf(c) : el("td", c));
  return tr;
}

function tdOf(node) {
  const td = document.createElement("td");
  td.append(node);
  return td;
}

function fill(tbody, rows, columns, emptyText) {
  if (rows.length === 0) {
    const td = el("td", emptyText, "empty");
    td.colSpan = columns;
    const tr = document.createElement("tr");
    tr.append(td);
    tbody.replaceChildren(tr);
  } else tbody.replaceChildren(...rows);
}

const num = (v) => el("td", v, "num");
const ep = (e) => `${e.addr}:${e.port}`;

function bits(n) {
  const units = ["", "k", "M", "G", "T"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function duration(sec) {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${sec % 60} s` : `${sec} s`;
}

// ---- the connection table -------------------------------------------------------------------

function sortValue(f, key) {
  const v = f[key];
  if (v && typeof v === "object")
    return v.addr.split(".").reduce((a, o) => a * 256 + Number(o), 0) * 65536 + v.port;
  return v;
}

function renderConns() {
  const snap = state.snapshot;
  if (!snap) return;
  const host = $("filter-host").value.trim();
  const proto = $("filter-proto").value;
  const st = $("filter-state").value;
  let flows = snap.flows.filter(
    (f) =>
      (host === "" || [f.inside.addr, f.outside.addr, f.remote.addr].some((a) => a.startsWith(host))) &&
      (proto === "" || f.protocol === proto) &&
      (st === "" || f.state === st),
  );
  const { key, dir } = state.sort;
  if (key !== "") {
    flows = [...flows].sort((a, b) => {
      const x = sortValue(a, key);
      const y = sortValue(b, key);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
  }
  const rows = flows.map((f) =>
    row([
      f.protocol,
      ep(f.inside),
      ep(f.outside),
      ep(f.remote),
      f.state,
      f.origin,
      num(f.idleSec),
      num(f.expiresInSec),
      num(f.bytesOut),
      num(f.bytesIn),
    ]),
  );
  fill($("conns").tBodies[0], rows, 10, "no connections");
  const shown = snap.flows.length;
  $("conns-count").textContent =
    `${flows.length} shown of ${snap.total} in the table` +
    (shown < snap.total ? ` (the ${shown} most recently active are here: masq conns lists all)` : "");
  for (const name of ["protocol", "state"]) {
    const select = $(`filter-${name === "protocol" ? "proto" : "state"}`);
    const have = new Set([...select.options].map((o) => o.value));
    for (const f of snap.flows)
      if (!have.has(f[name])) {
        select.append(new Option(f[name], f[name]));
        have.add(f[name]);
      }
  }
}

function setupSorting() {
  for (const th of $("conns").tHead.rows[0].cells) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      state.sort = state.sort.key === key ? { key, dir: -state.sort.dir } : { key, dir: 1 };
      for (const other of th.parentElement.cells) other.classList.remove("sorted-asc", "sorted-desc");
      th.classList.add(state.sort.dir > 0 ? "sorted-asc" : "sorted-desc");
      renderConns();
    });
  }
  for (const id of ["filter-host", "filter-proto", "filter-state"])
    $(id).addEventListener("input", renderConns);
  $("conns-filter").addEventListener("submit", (e) => e.preventDefault());
}

// ---- forwards, mappings, expectations, the public address -----------------------------------

function pinEnds(p) {
  return [p.id, p.protocol, ep(p.outside), ep(p.inside), p.remote];
}

function renderTables() {
  const snap = state.snapshot;
  const fw = snap.forwards.map((f) => {
    const cells = [f.id, f.protocol, f.outside, f.inside, f.remote, f.source, f.note, num(f.flows)];
    if (snap.allowChanges) {
      const b = el("button", "remove");
      b.addEventListener("click", () => removeForward(f.id));
      cells.push(b);
    } else cells.push("");
    return row(cells);
  });
  fill($("forwards").tBodies[0], fw, 9, "no forwards");
  const expires = (p) => (p.expiresInSec === null ? "never" : p.expiresInSec);
  fill(
    $("mappings").tBodies[0],
    snap.mappings.map((p) => row([...pinEnds(p), p.origin, p.note, num(expires(p)), num(p.flows)])),
    9,
    "no pinned mappings",
  );
  fill(
    $("expectations").tBodies[0],
    snap.expectations.map((p) => row([...pinEnds(p), p.origin, p.note, num(expires(p))])),
    8,
    "no expectations",
  );
  const changes = snap.addressChanges.map((c, i) => {
    const when = new Date(c.t).toLocaleTimeString();
    const to = c.to.length > 0 ? c.to.join(", ") : "none";
    return el(
      "li",
      i === 0 && c.from.length === 0 ? `${when}: ${to}` : `${when}: ${c.from.join(", ") || "none"} → ${to}`,
    );
  });
  $("address-changes").replaceChildren(...changes.reverse());
  $("forward-add").hidden = !snap.allowChanges;
}

function renderSummary() {
  const snap = state.snapshot;
  $("mode").textContent = snap.mode;
  $("public").textContent = snap.publicAddresses.join(", ") || "none";
  $("flow-count").textContent = `${snap.engine.flows} of ${snap.engine.capacity.flows}`;
  $("host-count").textContent = String(snap.engine.hosts);
  $("uptime").textContent = duration(snap.uptimeSec);
  document.body.dataset.seq = String(snap.seq);
}

// ---- charts ---------------------------------------------------------------------------------

/** The series names to draw: the biggest over the history, at most CHART_SERIES. */
function topNames(pick) {
  const total = new Map();
  for (const s of state.history) for (const [name, v] of pick(s)) total.set(name, (total.get(name) ?? 0) + v);
  return [...total.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, CHART_SERIES)
    .map(([n]) => n)
    .sort();
}

function drawChart(id, names, pointOf, format) {
  const xs = state.history.map((s) => s.t / 1000);
  const data = [xs, ...names.map((n) => state.history.map((s) => pointOf(s, n)))];
  const key = names.join("|");
  const box = $(id);
  let c = state.charts[id];
  if (!c || c.key !== key) {
    c?.plot.destroy();
    const opts = {
      width: Math.max(300, box.clientWidth),
      height: 200,
      legend: { show: true },
      axes: [{}, { values: (_u, ticks) => ticks.map(format), size: 60 }],
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: COLOURS[i % COLOURS.length], width: 1.5 }))],
    };
    c = { key, plot: new uPlot(opts, data, box) };
    state.charts[id] = c;
  } else c.plot.setData(data);
}

function renderCharts() {
  const hostsOf = (s) => s.hosts.map((h) => [h.addr, h.bpsOut + h.bpsIn]);
  const hosts = topNames(hostsOf);
  const findHost = (s, n) => s.hosts.find((h) => h.addr === n);
  drawChart(
    "chart-throughput",
    hosts,
    (s, n) => {
      const h = findHost(s, n);
      return h ? h.bpsOut + h.bpsIn : 0;
    },
    bits,
  );
  const flowHosts = topNames((s) => s.hosts.map((h) => [h.addr, h.flows]));
  drawChart(
    "chart-flows",
    flowHosts,
    (s, n) => findHost(s, n)?.flows ?? 0,
    (v) => String(v),
  );
  const reasons = topNames((s) => Object.entries(s.drops));
  drawChart(
    "chart-drops",
    reasons,
    (s, n) => s.drops[n] ?? 0,
    (v) => String(v),
  );
}

// ---- live updates ---------------------------------------------------------------------------

function show(snapshot) {
  if (!snapshot) return;
  state.snapshot = snapshot;
  renderSummary();
  renderConns();
  renderTables();
  renderCharts();
}

function connect() {
  const events = new EventSource("/api/events");
  const live = $("live");
  events.addEventListener("open", () => {
    live.textContent = "live";
    live.classList.remove("off");
  });
  events.addEventListener("error", () => {
    live.textContent = "reconnecting";
    live.classList.add("off");
  });
  events.addEventListener("hello", (e) => {
    const hello = JSON.parse(e.data);
    state.history = hello.history;
    show(hello.snapshot);
  });
  events.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    if (state.history.at(-1)?.t !== snap.sample.t) state.history.push(snap.sample);
    if (state.history.length > 300) state.history.shift();
    show(snap);
  });
}

// ---- changes (allow_changes only) -----------------------------------------------------------

async function change(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: { "content-type": "application/json", "x-masq-csrf": state.csrf ?? "" },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const reply = await r.json();
  if (!r.ok) throw new Error(`${reply.error} (${reply.code})`);
  return reply;
}

async function removeForward(id) {
  try {
    await change("DELETE", `/api/forwards/${id}`);
    $("forward-result").textContent = `forward ${id} removed`;
  } catch (err) {
    $("forward-result").textContent = String(err.message);
  }
}

function setupForwardForm() {
  const form = $("forward-add");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const body = { outside: data.get("outside"), inside: data.get("inside") };
    for (const k of ["remote", "note"]) if (data.get(k)) body[k] = data.get(k);
    try {
      const f = await change("POST", "/api/forwards", body);
      $("forward-result").textContent = `forward ${f.id} added: ${f.text}`;
      form.reset();
    } catch (err) {
      $("forward-result").textContent = String(err.message);
    }
  });
}

async function start() {
  setupSorting();
  setupForwardForm();
  const session = await (await fetch("/api/session")).json();
  state.csrf = session.csrf;
  connect();
}

start();
