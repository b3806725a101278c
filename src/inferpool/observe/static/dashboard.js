// inferpool dashboard: renders /api/stream snapshots (server-sent events, about once a second).
// Charts are plain inline SVG drawn here; nothing is fetched from outside this server.
"use strict";

const COLORS = ["#2f6fdb", "#e8710a", "#1a7f37", "#c62828", "#7b1fa2", "#00838f", "#6d4c41", "#c2185b"];

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function fmt(v, digits = 2) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return esc(v);
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// One SVG line chart: lines = [{name, values, color}], values aligned with `times` (null = gap).
function lineChart(lines, opts) {
  const w = opts.width, h = opts.height, pad = opts.axes ? 26 : 1, top = 4, bottom = opts.axes ? 14 : 1;
  const n = Math.max(1, ...lines.map((l) => l.values.length));
  let max = opts.max ?? 0;
  if (opts.max === undefined) for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v;
  max = opts.max ?? niceMax(max);
  const x = (i) => pad + (n <= 1 ? 0 : (i / (n - 1)) * (w - pad - 2));
  const y = (v) => top + (1 - Math.min(v, max) / max) * (h - top - bottom);
  let svg = `<svg class="${opts.cls || "spark"}" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img">`;
  if (opts.axes) {
    for (const f of [0, 0.5, 1]) {
      const yy = y(max * f).toFixed(1);
      svg += `<line x1="${pad}" x2="${w - 2}" y1="${yy}" y2="${yy}" stroke="#e3e6eb"/>`;
      svg += `<text x="${pad - 3}" y="${(+yy + 3).toFixed(1)}" font-size="9" text-anchor="end" fill="#6b7280">${fmt(max * f, max * f < 10 ? 1 : 0)}</text>`;
    }
    if (opts.span) {
      svg += `<text x="${pad}" y="${h - 2}" font-size="9" fill="#6b7280">-${opts.span}</text>`;
      svg += `<text x="${w - 2}" y="${h - 2}" font-size="9" text-anchor="end" fill="#6b7280">now</text>`;
    }
  } else {
    svg += `<line x1="0" x2="${w}" y1="${h - 0.5}" y2="${h - 0.5}" stroke="#e3e6eb"/>`;
  }
  for (const l of lines) {
    let d = "", pen = false;
    l.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) svg += `<path d="${d}" fill="none" stroke="${l.color}" stroke-width="1.5" stroke-linejoin="round"/>`;
  }
  return svg + "</svg>";
}

function spark(values, color, max) {
  return lineChart([{ name: "", values: values || [], color }], { width: 90, height: 22, max });
}

function span(snap) {
  const t = snap.series_times || [];
  if (t.length < 2) return "";
  const s = Math.round(t[t.length - 1] - t[0]);
  return s >= 60 ? `${Math.round(s / 60)}m` : `${s}s`;
}

function poolCharts(pool, snap) {
  const eps = pool.endpoints;
  const legend = eps.map((e, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(e.name)}</span>`).join("");
  const chart = (title, key, max) => {
    const lines = eps.map((e, i) => ({ name: e.name, values: (e.series || {})[key] || [], color: COLORS[i % COLORS.length] }));
    return `<div class="chart"><div class="title">${title}</div>${lineChart(lines, { width: 300, height: 110, axes: true, max, span: span(snap), cls: "big" })}</div>`;
  };
  return `<div class="charts">${chart("requests routed / s", "rps")}${chart("waiting queue", "queue")}${chart("running requests", "running")}${chart("KV-cache use", "kv", 1)}</div><div class="legend">${legend}</div>`;
}

function endpointRows(pool) {
  return pool.endpoints.map((e, i) => {
    const m = e.metrics, s = e.series || {}, color = COLORS[i % COLORS.length];
    const kv = Math.round((m.kv_cache_usage || 0) * 100);
    const active = (m.active_adapters || []).map((a) => `<span class="tag">${esc(a)}</span>`).join("");
    const waiting = (m.waiting_adapters || []).map((a) => `<span class="tag wait">${esc(a)}</span>`).join("");
    return `<tr data-endpoint="${esc(e.name)}">
      <td><span style="color:${color}">●</span> ${esc(e.name)}<div class="muted small">${esc(e.address)}:${e.port}</div></td>
      <td><span class="badge ${e.ready ? "ready" : "unready"}">${e.ready ? "ready" : "unready"}</span></td>
      <td class="num" data-field="queue">${m.waiting_queue_size}</td><td>${spark(s.queue, color)}</td>
      <td class="num" data-field="running">${m.running_requests}</td>
      <td><span class="kvbar"><span style="width:${kv}%"></span></span>${kv}%</td><td>${spark(s.kv, color, 1)}</td>
      <td>${active || '<span class="muted">–</span>'}${waiting}</td>
      <td class="num" data-field="in_flight">${e.in_flight}</td>
      <td class="num" data-field="rps">${fmt(e.rps, 1)}</td><td>${spark(s.rps, color)}</td>
      <td class="num" data-field="routed" data-routed="${e.routed}">${e.routed}</td>
      <td class="num muted">${m.age_s === null ? "never" : fmt(m.age_s, 1) + "s"}</td>
    </tr>`;
  }).join("");
}

// The label past observe.model_labels' limit of undeclared names (OTHER_MODELS there).
const OTHER_MODELS = "(other)";

function modelCell(m) {
  if (m.model_name === "") return '<span class="muted">(no model in the request)</span>';
  if (m.model_name === OTHER_MODELS) return '<span class="muted">(other undeclared names)</span>';
  return esc(m.model_name) + (m.declared ? "" : ' <span class="muted small">(not declared)</span>');
}

function modelRows(pool) {
  return pool.models.map((m) => {
    const st = m.stats, crit = m.criticality;
    const targets = m.targets.length ? m.targets.map((t) => `${esc(t.name)}${t.weight !== null && t.weight !== undefined ? ` <span class="muted">w${t.weight}</span>` : ""}`).join(", ") : '<span class="muted">itself</span>';
    return `<tr data-model="${esc(m.model_name)}">
      <td>${modelCell(m)}</td>
      <td>${crit ? `<span class="badge crit-${esc(crit)}">${esc(crit)}</span>` : '<span class="muted">–</span>'}</td>
      <td>${targets}</td>
      <td class="num">${fmt(st.rate_rps, 2)}</td><td class="num">${st.requests}</td>
      <td class="num">${fmt(st.ttft_p50_ms, 1)}</td><td class="num">${fmt(st.ttft_p99_ms, 1)}</td>
      <td class="num">${st.shed}</td><td class="num">${st.errors}</td>
    </tr>`;
  }).join("");
}

// A pool's InferenceObjectives, highest priority first; none: no section (most pools have none).
function objectiveTable(pool) {
  const objectives = pool.objectives || [];
  if (!objectives.length) return "";
  const rows = objectives.map((o) => `<tr data-objective="${esc(o.name)}"><td>${esc(o.name)}</td><td class="num">${esc(o.priority)}</td></tr>`).join("");
  return `<h3>InferenceObjectives <span class="muted small">named by x-gateway-inference-objective · highest priority first</span></h3>
      <table class="grid objectives"><thead><tr><th>objective</th><th>priority</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function renderPools(snap) {
  const html = snap.pools.map((p) => `
    <section class="card pool" data-pool="${esc(p.key)}">
      <h2>InferencePool ${esc(p.key)} <span class="muted small">${p.ready_endpoints}/${p.endpoints.length} endpoints ready</span></h2>
      <table class="grid endpoints"><thead><tr>
        <th>endpoint</th><th>health</th><th>queue</th><th></th><th>running</th><th>KV cache</th><th></th>
        <th>LoRA active / <span style="color:#b26a00">waiting</span></th><th>in flight</th><th>routed/s</th><th></th><th>routed</th><th>scraped</th>
      </tr></thead><tbody>${endpointRows(p)}</tbody></table>
      ${poolCharts(p, snap)}
      <h3>Models</h3>
      <table class="grid models"><thead><tr>
        <th>model</th><th>criticality</th><th>targets (weight)</th><th>req/s</th><th>requests</th>
        <th>TTFT p50 ms</th><th>TTFT p99 ms</th><th>shed</th><th>errors</th>
      </tr></thead><tbody>${modelRows(p)}</tbody></table>
      ${objectiveTable(p)}
    </section>`).join("");
  document.getElementById("pools").innerHTML = html || '<section class="card muted">No InferencePools loaded.</section>';
}

// status 0: the picker did not read the answer (sampled accounting, docs/epp.md)
const UNSEEN = "answer not read by the picker (sampled accounting): it ended, its status is unknown";

// Shed: refused by admission, flow control or a tenant's rate limit (decisions.is_shed; an
// empty pool's 503 is an error).
function statusClass(d) {
  if (d.status < 400) return "status-ok";
  return d.shed ? "status-shed" : "status-err";
}

// After a failed status: its shed reason (the cause, in full), else the start of its error.
function statusNote(d) {
  if (d.status < 400) return "";
  const note = d.shed_reason || (d.error || "").slice(0, 24);
  return note ? ` <span class="small">${esc(note)}</span>` : "";
}

// P/D: the prefill leg under the decode endpoint; a failed one says the decoder prefilled itself.
function prefillNote(d) {
  const p = d.prefill;
  if (!p) return "";
  const took = p.duration_s === null ? "" : ` ${fmt(p.duration_s * 1000, 0)} ms`;
  if (p.fell_back) {
    return `<br><span class="small status-err" title="${esc(p.error || "")}">prefill ${esc(p.endpoint)} failed → local prefill</span>`;
  }
  return `<br><span class="small muted" title="${esc(p.error || "")}">prefill ${esc(p.endpoint)}${took}</span>`;
}

function renderDecisions(snap) {
  const rows = snap.decisions.slice(0, 30).map((d) => {
    const when = new Date(d.ts * 1000).toLocaleTimeString();
    const cands = (d.ranked || []).map((c) => {
      const scores = Object.entries(c.scores || {}).map(([k, v]) => `<span class="score">${esc(k.replace(/-scorer$/, ""))} ${fmt(v, 2)}</span>`).join(" · ");
      return `<span class="cand ${c.endpoint === d.picked ? "picked" : ""}"><b>${esc(c.endpoint)}</b> ${fmt(c.total, 3)} <span class="scores">${scores}</span></span>`;
    }).join("");
    const filtered = Object.entries(d.filtered_out || {}).map(([e, why]) => `${esc(e)}: ${esc(why)}`).join("<br>");
    const target = d.target_model && d.target_model !== d.model ? ` → ${esc(d.target_model)}` : "";
    return `<tr data-request-id="${esc(d.request_id)}">
      <td class="muted">${when}</td><td class="muted small">${esc(d.request_id).slice(0, 12)}</td>
      <td>${d.model ? esc(d.model) : `<span class="muted">${esc(d.request || "–")}</span>`}${target}</td><td>${esc(d.picked || "–")}${prefillNote(d)}</td>
      <td class="${statusClass(d)}" title="${esc(d.error || (d.status ? "" : UNSEEN))}">${d.status || "–"}${statusNote(d)}</td>
      <td class="num">${d.ttft_s === null ? "–" : fmt(d.ttft_s * 1000, 0) + " ms"}</td>
      <td class="cands">${cands || '<span class="muted">–</span>'}</td><td class="filtered">${filtered}</td>
    </tr>`;
  }).join("");
  document.querySelector("#decisions tbody").innerHTML = rows;
  document.getElementById("no-decisions").style.display = rows ? "none" : "";
}

function render(snap) {
  renderPools(snap);
  renderDecisions(snap);
  document.getElementById("clock").textContent = "updated " + new Date(snap.time * 1000).toLocaleTimeString();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/stream");
  source.addEventListener("snapshot", (ev) => {
    conn.textContent = "live"; conn.className = "conn on";
    render(JSON.parse(ev.data));
  });
  source.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "conn off"; };
}

connect();
