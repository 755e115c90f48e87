// The pouw-node dashboard: polls this node's own JSON-RPC (POST /) and draws what it says.
// No framework, no build step. Every value from the chain is written with textContent,
// never as HTML (job specs and names are anyone's input).
"use strict";

const REFRESH_MS = 2000;
const SLOW_REFRESH_MS = 8000;   // job histories and miners' rewards (they cost the node more)
const BLOCKS_SHOWN = 15;
const MINER_WINDOW = 64;        // miners are counted over this many latest blocks
const JOBS_SHOWN = 6;
const STANDING_BASE = 1n << 128n;
const SVG_NS = "http://www.w3.org/2000/svg";

let requestId = 0;
let lastSlow = 0;
let histories = new Map();      // job id (string) -> pouw_getJobHistory answer
let minerRows = [];
let importsByHash = new Map();
let info = null;

// --- JSON-RPC ------------------------------------------------------------------------------

async function post(body) {
  const response = await fetch("/", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

async function rpc(method, params = []) {
  const answer = await post({ jsonrpc: "2.0", id: ++requestId, method, params });
  if (answer.error) throw new Error(`${method}: ${answer.error.message}`);
  return answer.result;
}

// Several calls in one JSON-RPC batch; a failed call gives null in its place.
async function batch(calls) {
  if (calls.length === 0) return [];
  const first = requestId + 1;
  const body = calls.map(([method, params]) => ({ jsonrpc: "2.0", id: ++requestId, method, params }));
  const answers = await post(body);
  const byId = new Map((Array.isArray(answers) ? answers : [answers]).map((a) => [a.id, a]));
  return calls.map((_, i) => {
    const a = byId.get(first + i);
    return a && !a.error ? a.result : null;
  });
}

// --- formatting ----------------------------------------------------------------------------

const big = (hex) => (hex === null || hex === undefined ? null : BigInt(hex));
const num = (hex) => (hex === null || hex === undefined ? null : Number(BigInt(hex)));

function jobLabel(hex) {
  const id = BigInt(hex);
  if (id === 0n) return "-";
  return id >= STANDING_BASE ? `standing-${id - STANDING_BASE}` : id.toString();
}

function short(hex, keep = 6) {
  if (!hex) return "-";
  return hex.length > 2 + 2 * keep ? `${hex.slice(0, 2 + keep)}…${hex.slice(-4)}` : hex;
}

function eth(wei) {
  if (wei === null || wei === undefined) return "-";
  const value = typeof wei === "bigint" ? wei : BigInt(wei);
  if (value > 0n && value < 10n ** 14n) return gwei(value);  // below 0.0001 ETH: say it in gwei
  const whole = value / 10n ** 18n;
  const frac = (value % 10n ** 18n).toString().padStart(18, "0").slice(0, 4).replace(/0+$/, "");
  return `${whole}${frac ? "." + frac : ""} ETH`;
}

function gwei(wei) {
  const value = BigInt(wei);
  if (value >= 10n ** 14n) return eth(value);
  if (value >= 10n ** 6n) return `${Number(value) / 1e9} gwei`;
  return `${value} wei`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "-";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 90) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function rate(units) {
  if (!units) return "0";
  const steps = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [scale, suffix] of steps) if (units >= scale) return `${(units / scale).toFixed(2)} ${suffix}`;
  return units.toFixed(1);
}

// --- DOM helpers ---------------------------------------------------------------------------

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function setText(id, text) {
  document.getElementById(id).textContent = text;
}

function row(cells, classes = []) {
  const tr = el("tr");
  cells.forEach((cell, i) => {
    const td = cell instanceof Node ? el("td") : el("td", cell);
    if (cell instanceof Node) td.appendChild(cell);
    if (classes[i]) td.className = classes[i];
    tr.appendChild(td);
  });
  return tr;
}

function facts(container, pairs) {
  container.replaceChildren(...pairs.map(([name, value, id]) => {
    const div = el("div");
    const dd = el("dd", value);
    if (id) dd.id = id;
    div.append(el("dt", name), dd);
    return div;
  }));
}

// --- the node and the chain ----------------------------------------------------------------

async function refreshNode() {
  const [nodeInfo, stats, imports] = await batch([
    ["pouw_nodeInfo", []],
    ["pouw_networkStats", [100]],
    ["pouw_blockImports", [256]],
  ]);
  info = nodeInfo;
  if (nodeInfo) {
    setText("node-client", nodeInfo.clientVersion);
    setText("node-chain", `${num(nodeInfo.chainId)} (${nodeInfo.sealEngine})`);
    setText("node-peers", num(nodeInfo.peers));
    const warning = document.getElementById("untrained");
    warning.hidden = nodeInfo.trainsJobs;
    warning.textContent = nodeInfo.trainsJobs ? "" :
      "This is a development chain without proof of work: nobody trains jobs here, so posted jobs never make progress.";
  }
  if (stats) {
    setText("node-head", `#${num(stats.head)}`);
    setText("node-rate", `${rate(num(stats.workRate))} units/s`);
    setText("node-blocktime", stats.averageBlockTime === null ? "-" :
      `${stats.averageBlockTime.toFixed(2)} s (target ${stats.targetBlockTime} s)`);
  }
  importsByHash = new Map((imports || []).map((r) => [r.hash, r]));
  return stats ? num(stats.head) : null;
}

async function refreshBlocks(head) {
  const numbers = [];
  for (let n = head; n >= 0 && numbers.length < BLOCKS_SHOWN; n--) numbers.push(n);
  const blocks = await batch(numbers.map((n) => ["eth_getBlockByNumber", ["0x" + n.toString(16), false]]));
  const now = Date.now() / 1000;
  const body = document.querySelector("#blocks tbody");
  body.replaceChildren(...blocks.filter(Boolean).map((b) => {
    const imported = importsByHash.get(b.hash);
    const verify = imported && imported.verifySeconds !== null ? duration(imported.verifySeconds) : "-";
    const source = imported ? imported.source : (num(b.number) === 0 ? "genesis" : "-");
    const tr = row([
      `#${num(b.number)}`, short(b.hash), duration(now - num(b.timestamp)), short(b.miner),
      b.jobId ? jobLabel(b.jobId) : "-", b.stepCount ? num(b.stepCount) : "-", b.transactions.length, verify, source,
    ], ["", "mono", "", "mono", "", "num", "num", "num", ""]);
    tr.dataset.number = num(b.number);
    tr.dataset.hash = b.hash;
    return tr;
  }));
  return blocks.filter(Boolean);
}

// --- jobs ----------------------------------------------------------------------------------

async function refreshJobs(slow) {
  const [open, all] = await batch([
    ["pouw_listJobs", [{ status: ["open", "standing"], limit: 50 }]],
    ["pouw_listJobs", [{ status: ["completed", "cancelled"], includeStanding: false, limit: 1000 }]],
  ]);
  const jobs = [...(open || []).filter((j) => j.kind === "posted"), ...(all || []).reverse(),
    ...(open || []).filter((j) => j.kind === "standing")].slice(0, JOBS_SHOWN);
  if (slow || jobs.some((j) => !histories.has(j.id))) {
    const answers = await batch(jobs.map((j) => ["pouw_getJobHistory", [j.id, { points: 40 }]]));
    jobs.forEach((j, i) => { if (answers[i]) histories.set(j.id, answers[i]); });
  }
  const container = document.getElementById("jobs");
  if (jobs.length === 0) {
    container.replaceChildren(el("p", "No jobs yet.", "empty"));
    return;
  }
  container.replaceChildren(...jobs.map((job) => drawJob(job, histories.get(job.id))));
}

function drawJob(job, history) {
  const card = el("div", null, "job");
  card.id = `job-${jobLabel(job.id)}`;
  const left = el("div");
  const title = el("h3", `job ${jobLabel(job.id)}`);
  title.appendChild(el("span", job.status, `badge ${job.status}`));
  const done = num(job.stepsDone);
  const budget = num(job.stepBudget);
  const bar = el("div", null, "bar");
  const fill = el("span");
  fill.style.width = `${Math.min(100, 100 * job.progress).toFixed(1)}%`;
  bar.appendChild(fill);
  const spec = job.spec || {};
  const kv = el("div", null, "kv");
  const eta = history ? (job.status === "completed" ? "done" :
    history.etaSeconds === null ? "-" : `${duration(history.etaSeconds)} (${history.etaBasis === "job" ? "its recent rate" : "network work rate"})`) : "…";
  const accuracy = lastAccuracy(history);
  const pairs = [
    ["progress", `${done} / ${budget} steps (${(100 * job.progress).toFixed(1)}%)`],
    ["ETA", eta],
    ["rate", history && history.stepsPerSecond ? `${history.stepsPerSecond.toFixed(1)} steps/s` : "-"],
    ["accuracy", accuracy === null ? "-" : `${(100 * accuracy).toFixed(2)}% (held out, exact)`],
    ["model", `${spec.family || "?"} ${(spec.input_shape || []).join("x")} → [${(spec.hidden || []).join(",")}] → ${spec.num_classes || "?"}`],
  ];
  if (job.kind === "posted") {
    pairs.push(["price", `${gwei(job.pricePerStep)} / step`]);
    pairs.push(["fees paid", eth(job.feesPaid)]);
    pairs.push(["escrow left", `${eth(job.escrowLeft)} of ${eth(job.initialEscrow)}`]);
    pairs.push(["poster", short(job.poster)]);
  }
  pairs.push(["audit", auditText(job)]);
  for (const [name, value] of pairs) kv.append(el("span", name), el("span", value));
  left.append(title, bar, kv);
  card.append(left, drawCurve(history));
  return card;
}

function auditText(job) {
  // The job's audit state (docs/rpc-pouw.md): this node's auditor and the chain's proofs.
  const audit = job.audit;
  if (audit === undefined || audit === null) return "not applicable (no proof of work)";
  const through = audit.auditedThrough ? ` through #${parseInt(audit.auditedThrough, 16)}` : "";
  const proven = parseInt(audit.fraudsProven || "0x0", 16);
  const last = audit.lastFraud
    ? `; ${proven} fraud(s) proven, last in #${parseInt(audit.lastFraud.blockNumber, 16)}` : "";
  if (audit.state === "fraudFound" && audit.found.length) {
    const f = audit.found[0];
    return `FRAUD FOUND in #${parseInt(f.blockNumber, 16)}, segment ${parseInt(f.segment, 16)} (${f.status})${last}`;
  }
  if (audit.state === "audited") return `audited${through}, every step honest${last}`;
  if (audit.state === "fraudProven") return `fraud proven, rolled back${last}`;
  return (through ? `partly audited${through}` : "unaudited (no auditor here)") + last;
}

function lastAccuracy(history) {
  if (!history) return null;
  for (let i = history.checkpoints.length - 1; i >= 0; i--) {
    if (history.checkpoints[i].accuracy !== null) return history.checkpoints[i].accuracy;
  }
  return null;
}

function drawCurve(history) {
  const width = 320, height = 140, pad = { l: 34, r: 8, t: 10, b: 22 };
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "curve");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const text = (x, y, value, anchor = "start") => {
    const t = document.createElementNS(SVG_NS, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor);
    t.textContent = value;
    svg.appendChild(t);
  };
  const points = history ? history.checkpoints.filter((c) => c.accuracy !== null) : [];
  const maxSteps = Math.max(1, ...points.map((c) => num(c.stepsDone)));
  const x = (steps) => pad.l + (width - pad.l - pad.r) * (steps / maxSteps);
  const y = (acc) => height - pad.b - (height - pad.t - pad.b) * acc;
  for (const level of [0, 0.5, 1]) {
    const line = document.createElementNS(SVG_NS, "line");
    line.setAttribute("x1", pad.l); line.setAttribute("x2", width - pad.r);
    line.setAttribute("y1", y(level)); line.setAttribute("y2", y(level));
    svg.appendChild(line);
    text(pad.l - 4, y(level) + 3, `${level * 100}%`, "end");
  }
  text(width - pad.r, height - 6, `${maxSteps} steps`, "end");
  text(pad.l, height - 6, "accuracy over checkpoints");
  if (points.length > 0) {
    const poly = document.createElementNS(SVG_NS, "polyline");
    poly.setAttribute("points", points.map((c) => `${x(num(c.stepsDone)).toFixed(1)},${y(c.accuracy).toFixed(1)}`).join(" "));
    svg.appendChild(poly);
    for (const c of points) {
      const dot = document.createElementNS(SVG_NS, "circle");
      dot.setAttribute("cx", x(num(c.stepsDone)).toFixed(1)); dot.setAttribute("cy", y(c.accuracy).toFixed(1));
      dot.setAttribute("r", 2);
      svg.appendChild(dot);
    }
  } else {
    text(width / 2, height / 2, history ? "no checkpoint evaluated yet" : "loading…", "middle");
  }
  svg.dataset.points = String(points.length);
  return svg;
}

// --- miners --------------------------------------------------------------------------------

async function refreshMiners(head) {
  const first = Math.max(1, head - MINER_WINDOW + 1);
  const numbers = [];
  for (let n = head; n >= first; n--) numbers.push(n);
  const blocks = await batch(numbers.map((n) => ["eth_getBlockByNumber", ["0x" + n.toString(16), false]]));
  const miners = [...new Set(blocks.filter(Boolean).map((b) => b.miner))];
  const from = "0x" + first.toString(16), to = "0x" + head.toString(16);
  const rewards = await batch(miners.map((m) => ["pouw_getRewards", [m, from, to]]));
  minerRows = miners.map((m, i) => ({ miner: m, r: rewards[i] })).filter((x) => x.r)
    .sort((a, b) => num(b.r.blocksMined) - num(a.r.blocksMined));
  setText("miners-window", head >= 1 ? `blocks #${first} to #${head}` : "");
}

function drawMiners() {
  const body = document.querySelector("#miners tbody");
  if (minerRows.length === 0) {
    body.replaceChildren(row(["no blocks mined yet", "", "", "", "", ""]));
    return;
  }
  body.replaceChildren(...minerRows.map(({ miner, r }) => row([
    miner, num(r.blocksMined), eth(r.blockRewards), eth(r.jobFees), eth(r.mature), eth(r.immature),
  ], ["mono", "num", "num", "num", "num", "num"])));
}

// --- this node's miner ---------------------------------------------------------------------

async function refreshMiner() {
  const status = await rpc("pouw_minerStatus");
  const current = status.currentJob;
  const last = status.lastBlock;
  facts(document.getElementById("miner"), [
    ["mining", status.mining ? "yes" : "no", "miner-mining"],
    ["coinbase", status.coinbase || "-"],
    ["device", status.device],
    ["steps/s", status.stepsPerSecond.toFixed(1), "miner-steps"],
    ["work units/s", rate(num(status.workUnitsPerSecond))],
    ["blocks mined", num(status.blocksMined), "miner-blocks"],
    ["current job", current ? `${jobLabel(current.jobId)}, step ${current.step}, ${current.seconds.toFixed(1)} s` : "-"],
    ["last block", last ? `#${num(last.number)}: ${num(last.steps)} steps in ${last.trainSeconds.toFixed(2)} s` : "-"],
  ]);
  const gpus = document.getElementById("gpus");
  if (Array.isArray(status.gpus)) {
    const table = el("table");
    table.appendChild(row(["GPU", "name", "utilisation", "memory", "temperature", "power"]));
    for (const g of status.gpus) {
      table.appendChild(row([
        g.index, g.name, g.utilization === null ? "-" : `${g.utilization}%`,
        g.memoryUsed === null ? "-" : `${(g.memoryUsed / 2 ** 30).toFixed(1)} / ${(g.memoryTotal / 2 ** 30).toFixed(1)} GiB`,
        g.temperature === null ? "-" : `${g.temperature} °C`, g.powerWatts === null ? "-" : `${g.powerWatts.toFixed(0)} W`,
      ]));
    }
    gpus.replaceChildren(table);
  } else {
    gpus.replaceChildren(el("p", `No GPU telemetry: ${status.gpus.reason}`, "empty"));
  }
}

// --- the loop ------------------------------------------------------------------------------

async function refresh() {
  const status = document.getElementById("status");
  try {
    const slow = Date.now() - lastSlow > SLOW_REFRESH_MS;
    const head = await refreshNode();
    if (head !== null) {
      await refreshBlocks(head);
      if (slow) await refreshMiners(head);
      drawMiners();
    }
    await refreshJobs(slow);
    await refreshMiner();
    if (slow) lastSlow = Date.now();
    status.className = "status";
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.ready = "true";
  } catch (error) {
    status.className = "status error";
    status.textContent = `cannot read the node: ${error.message}`;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

document.addEventListener("DOMContentLoaded", refresh);
