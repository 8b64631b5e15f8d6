"""The HTML page of `charrnn inspect`: inline CSS and JS, no network request; __HEAD__ is
standalone_page.page_head, __DATA__ the page's JSON."""

TEMPLATE = r"""__HEAD__
<style>
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #fff; }
  header, nav, section, #main { padding: 6px 16px; }
  header h1 { font-size: 18px; margin: 6px 0 2px; }
  #meta { color: #555; }
  #meta b { color: #222; }
  nav { position: sticky; top: 0; background: #f6f6f6; border-bottom: 1px solid #ddd; z-index: 2;
        display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; }
  nav button.mode { padding: 3px 10px; border: 1px solid #aaa; background: #fff; cursor: pointer; }
  nav button.mode.on { background: #333; color: #fff; border-color: #333; }
  #unit { width: 5em; }
  #unit-name { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: bold; }
  .legend { display: inline-flex; align-items: center; gap: 4px; font-size: 12px; color: #555; }
  .legend .bar { width: 140px; height: 12px; border: 1px solid #ccc; }
  #main { display: flex; gap: 16px; align-items: flex-start; }
  #text { flex: 1; min-width: 0; font: 13px/1.6 ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace;
          white-space: pre-wrap; word-break: break-all; tab-size: 4; margin: 0; outline: none; }
  #text span { cursor: pointer; }
  #text span.nl { color: #bbb; }
  #text span.sel { outline: 2px solid #000; outline-offset: -1px; }
  #panel { width: 290px; flex: none; position: sticky; top: 52px; border: 1px solid #ddd; padding: 8px 10px;
           background: #fcfcfc; font-size: 13px; }
  #panel .ctx { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre; overflow: hidden;
                background: #f0f0f0; padding: 2px 4px; }
  #panel .ctx b { background: #ffe08a; }
  #panel ol { margin: 4px 0; padding-left: 22px; }
  #panel li { font-family: ui-monospace, Menlo, Consolas, monospace; }
  #panel li.hit { font-weight: bold; color: #b00; }
  #panel li .pbar { display: inline-block; height: 9px; background: #6a9fd4; vertical-align: middle; margin: 0 6px; }
  #panel .hint { color: #777; font-size: 12px; }
  table#units { border-collapse: collapse; }
  table#units td, table#units th { border-bottom: 1px solid #eee; padding: 3px 10px 3px 0; text-align: left; }
  table#units button { font-family: ui-monospace, Menlo, Consolas, monospace; cursor: pointer; margin-right: 6px;
                       border: 1px solid #bbb; background: #fff; }
  table#units button.on { background: #333; color: #fff; }
  #sat { display: flex; flex-wrap: wrap; gap: 18px; }
  #sat figure { margin: 0; }
  #sat figcaption { text-align: center; font-weight: bold; }
  #sat circle { cursor: pointer; fill-opacity: 0.55; }
  #sat circle:hover { fill-opacity: 1; stroke: #000; }
  .note { color: #777; font-size: 12px; }
</style>
</head>
<body>
<header><h1 id="title"></h1><div id="meta"></div></header>
<nav>
  <span><button class="mode" id="mode-surprise" title="colour by cost in bits">Surprise</button>
        <button class="mode" id="mode-neuron" title="colour by one unit's activation">Neurons</button></span>
  <span id="neuron-controls">
    <label>layer <select id="layer"></select></label>
    <label id="kind-label">state <select id="kind"><option value="h">h</option>
      <option value="c">tanh(c)</option></select></label>
    <label>unit <button id="prev" title="previous unit (left arrow)">&#9664;</button><input id="unit" type="number"
      min="0" value="0"><button id="next" title="next unit (right arrow)">&#9654;</button></label>
    <select id="unitlist" title="all units of the layer"></select>
    <span id="unit-name"></span> <span class="note">&larr; &rarr; step through units</span>
  </span>
  <span class="legend" id="legend"></span>
</nav>
<div id="main">
  <div id="text" tabindex="0"></div>
  <aside id="panel"></aside>
</div>
<section><h2>Units worth a look</h2>
  <p class="note">For simple properties of the text above, the units whose activation over it correlates most
  (Pearson r; L1:37 is unit 37 of layer 1's h, L1:c37 its tanh(c)). Click one to colour the text by it.</p>
  <table id="units"></table></section>
<section id="gates"><h2>Gate saturation</h2>
  <p class="note">Each point is one unit: the fraction of characters at which its gate is below 0.1 (left
  saturated, x) and above 0.9 (right saturated, y). Click a point to select the unit.</p>
  <div id="sat"></div></section>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const chars = Array.from(D.text);
const T = chars.length, H = D.hidden, K = D.k;
const $ = (id) => document.getElementById(id);
const state = { mode: "surprise", layer: 0, kind: "h", unit: 0, pos: null, pinned: false };
let ACTS = null;  // one byte per (kind, layer, unit, character), in that order; filled by main()

async function inflate(b64) {
  const bin = atob(b64), bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
const activation = (kind, layer, unit, t) =>
  ACTS[((D.kinds.indexOf(kind) * D.layers + layer) * H + unit) * T + t] / 127.5 - 1;

function mix(stops, x) {  // stops: [[at, [r, g, b]], ...] ascending
  let i = 1;
  while (i < stops.length - 1 && x > stops[i][0]) i++;
  const [a0, c0] = stops[i - 1], [a1, c1] = stops[i];
  const f = Math.min(1, Math.max(0, (x - a0) / (a1 - a0)));
  return c0.map((c, j) => Math.round(c + (c1[j] - c) * f));
}
const SURPRISE = [[0, [255, 255, 255]], [4, [253, 174, 97]], [8, [215, 25, 28]]];
const DIVERGING = [[-1, [33, 102, 172]], [-0.5, [146, 197, 222]], [0, [247, 247, 247]], [0.5, [244, 165, 130]],
                   [1, [178, 24, 43]]];
const rgb = (c) => "rgb(" + c.join(", ") + ")";
const dark = (c) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] < 120;

function shown(ch) {
  if (ch === "\n") return "\u21b5";
  if (ch === "\t") return "\t";
  const code = ch.codePointAt(0);
  if (code < 32 || (code >= 127 && code < 160)) return "\u00b7";
  return ch;
}
const label = (id) => D.labels[id];
const unitName = (layer, kind, unit) => "L" + (layer + 1) + ":" + (kind === "c" ? "c" : "") + unit;

// ---- the text ----
const spans = [];
(function buildText() {
  const box = $("text"), frag = document.createDocumentFragment();
  chars.forEach((ch, t) => {
    const s = document.createElement("span");
    s.textContent = shown(ch);
    if (ch === "\n") s.className = "nl";
    s.dataset.t = t;
    spans.push(s);
    frag.appendChild(s);
    if (ch === "\n") frag.appendChild(document.createTextNode("\n"));
  });
  box.appendChild(frag);
})();

function colour() {
  const hasLayer = state.mode === "neuron";
  for (let t = 0; t < T; t++) {
    let c;
    if (hasLayer) c = mix(DIVERGING, activation(state.kind, state.layer, state.unit, t));
    else c = D.bits[t] === null ? [235, 235, 235] : mix(SURPRISE, D.bits[t]);
    spans[t].style.background = rgb(c);
    spans[t].style.color = dark(c) ? "#fff" : "";
  }
  const legend = $("legend");
  if (hasLayer) {
    const grad = DIVERGING.map(([a, c]) => rgb(c) + " " + ((a + 1) * 50) + "%").join(", ");
    legend.innerHTML = "-1 <span class='bar' style='background: linear-gradient(to right, " + grad +
      ")'></span> +1";
  } else {
    const grad = SURPRISE.map(([a, c]) => rgb(c) + " " + (a / 8 * 100) + "%").join(", ");
    legend.innerHTML = "0 <span class='bar' style='background: linear-gradient(to right, " + grad +
      ")'></span> 8+ bits";
  }
  $("mode-surprise").classList.toggle("on", !hasLayer);
  $("mode-neuron").classList.toggle("on", hasLayer);
  $("neuron-controls").style.opacity = hasLayer ? "1" : "0.5";
  const name = unitName(state.layer, state.kind, state.unit);
  $("unit-name").textContent = hasLayer ? name : "";
  document.querySelectorAll("#units button").forEach(
    (b) => b.classList.toggle("on", hasLayer && b.dataset.unit === name));
  showPos(state.pos);
}

// ---- the panel: what the model expected at one position ----
function showPos(t) {
  const panel = $("panel");
  panel.innerHTML = "";
  spans.forEach((s) => s.classList.remove("sel"));
  if (t === null || t < 0 || t >= T) {
    panel.innerHTML = "<div class='hint'>Hover or tap a character to see the model's guesses for it.</div>";
    return;
  }
  spans[t].classList.add("sel");
  const add = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    panel.appendChild(e);
    return e;
  };
  add("div", "", "position " + t + ": " + label(D.ids[t]));
  const ctx = add("div", "ctx");
  const from = Math.max(0, t - 24);
  const before = D.ids.slice(from, t).map(label).join("");
  ctx.appendChild(document.createTextNode(before));
  const b = document.createElement("b");
  b.textContent = label(D.ids[t]);
  ctx.appendChild(b);
  if (D.bits[t] === null) {
    add("div", "hint", "No guess: nothing came before this character.");
  } else {
    add("div", "cost", D.bits[t].toFixed(2) + " bits (p = " + Math.pow(2, -D.bits[t]).toPrecision(3) + ")");
    add("div", "", "The model's top " + K + " guesses for this character:");
    const ol = add("ol", "");
    ol.id = "top5";
    for (let j = 0; j < K; j++) {
      const id = D.top_ids[t * K + j], p = D.top_p[t * K + j] / 10000;
      const li = document.createElement("li");
      li.dataset.char = label(id);
      li.dataset.p = p.toFixed(4);
      if (id === D.ids[t]) li.className = "hit";
      const ch = document.createElement("span");
      ch.textContent = label(id).padEnd(3, " ");
      const bar = document.createElement("span");
      bar.className = "pbar";
      bar.style.width = Math.round(p * 100) + "px";
      li.append(ch, bar, (p * 100).toFixed(1) + "%");
      ol.appendChild(li);
    }
  }
  if (state.mode === "neuron") {
    add("div", "", unitName(state.layer, state.kind, state.unit) + " = " +
      activation(state.kind, state.layer, state.unit, t).toFixed(2));
  }
  add("div", "hint", state.pinned ? "Pinned: click the character again to unpin." : "Click to pin.");
}
$("text").addEventListener("mouseover", (e) => {
  const t = e.target.dataset && e.target.dataset.t;
  if (t !== undefined && !state.pinned) { state.pos = +t; showPos(state.pos); }
});
$("text").addEventListener("click", (e) => {
  const t = e.target.dataset && e.target.dataset.t;
  if (t === undefined) return;
  state.pinned = !(state.pinned && state.pos === +t);
  state.pos = +t;
  showPos(state.pos);
});

// ---- choosing a unit ----
function fillUnitList() {
  const ranked = {};
  for (const [prop, list] of Object.entries(D.units)) {
    for (const u of list) if (!(u.unit in ranked)) ranked[u.unit] = prop + " r=" + u.r.toFixed(2);
  }
  const sel = $("unitlist");
  sel.innerHTML = "";
  for (let u = 0; u < H; u++) {
    const name = unitName(state.layer, state.kind, u);
    const o = document.createElement("option");
    o.value = u;
    o.textContent = name + (ranked[name] ? "  (" + ranked[name] + ")" : "");
    sel.appendChild(o);
  }
  sel.value = state.unit;
}
function select(layer, kind, unit, fromHash) {
  state.mode = "neuron";
  state.layer = Math.min(D.layers - 1, Math.max(0, layer));
  state.kind = kind === "c" && D.kinds.includes("c") ? "c" : "h";
  state.unit = ((unit % H) + H) % H;
  $("layer").value = state.layer;
  $("kind").value = state.kind;
  $("unit").value = state.unit;
  fillUnitList();
  colour();
  if (!fromHash) {
    const hash = "#unit=" + unitName(state.layer, state.kind, state.unit) + (state.pinned ? "&pos=" + state.pos : "");
    try { history.replaceState(null, "", hash); } catch (err) { /* some browsers refuse on file:// */ }
  }
}
function selectByName(name, fromHash) {
  const m = /^L(\d+):(c?)(\d+)$/.exec(name);
  if (!m) return false;
  select(+m[1] - 1, m[2] ? "c" : "h", +m[3], fromHash);
  return true;
}
for (let k = 0; k < D.layers; k++) {
  const o = document.createElement("option");
  o.value = k;
  o.textContent = "L" + (k + 1);
  $("layer").appendChild(o);
}
if (!D.kinds.includes("c")) $("kind-label").style.display = "none";
$("layer").onchange = () => select(+$("layer").value, state.kind, state.unit);
$("kind").onchange = () => select(state.layer, $("kind").value, state.unit);
$("unit").onchange = () => select(state.layer, state.kind, +$("unit").value || 0);
$("unitlist").onchange = () => select(state.layer, state.kind, +$("unitlist").value);
$("prev").onclick = () => select(state.layer, state.kind, state.unit - 1);
$("next").onclick = () => select(state.layer, state.kind, state.unit + 1);
$("mode-neuron").onclick = () => select(state.layer, state.kind, state.unit);
$("mode-surprise").onclick = () => {
  state.mode = "surprise";
  colour();
  try { history.replaceState(null, "", location.pathname + location.search); } catch (err) { /* file:// */ }
};
document.addEventListener("keydown", (e) => {
  const tag = e.target.tagName;
  if (tag === "INPUT" || tag === "SELECT" || e.altKey || e.ctrlKey || e.metaKey) return;
  const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];  // up and down still scroll
  if (step) {
    e.preventDefault();
    select(state.layer, state.kind, state.unit + step);
  }
});

// ---- units worth a look ----
(function unitTable() {
  const table = $("units");
  const entries = Object.entries(D.units);
  if (!entries.length) table.outerHTML = "<p class='note'>The text is too uniform to correlate with.</p>";
  for (const [prop, list] of entries) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = prop;
    const td = document.createElement("td");
    for (const u of list) {
      const b = document.createElement("button");
      b.dataset.unit = u.unit;
      b.textContent = u.unit + "  r = " + (u.r >= 0 ? "+" : "") + u.r.toFixed(2);
      b.onclick = () => selectByName(u.unit);
      td.appendChild(b);
    }
    tr.append(th, td);
    table.appendChild(tr);
  }
})();

// ---- gate saturation ----
(function saturationPlots() {
  const box = $("sat"), names = Object.keys(D.saturation);
  if (!names.length) {
    $("gates").innerHTML = "<h2>Gate saturation</h2><p class='note'>A plain RNN has no gates.</p>";
    return;
  }
  const NS = "http://www.w3.org/2000/svg", S = 220, P = 30;
  const colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  const el = (tag, attrs, parent) => {
    const e = document.createElementNS(NS, tag);
    for (const [a, v] of Object.entries(attrs)) e.setAttribute(a, v);
    if (parent) parent.appendChild(e);
    return e;
  };
  for (const gate of names) {
    const fig = document.createElement("figure");
    const W = S + P + 10;
    const svg = el("svg", { width: W, height: W, viewBox: "0 0 " + W + " " + W });
    const x = (f) => P + f * S, y = (f) => 10 + (1 - f) * S;
    el("rect", { x: P, y: 10, width: S, height: S, fill: "none", stroke: "#999" }, svg);
    el("line", { x1: x(0), y1: y(1), x2: x(1), y2: y(0), stroke: "#ddd" }, svg);  // low + high <= 1
    for (const [f, txt] of [[0, "0"], [0.5, "0.5"], [1, "1"]]) {
      el("text", { x: x(f), y: S + 24, "font-size": 10, "text-anchor": "middle" }, svg).textContent = txt;
      el("text", { x: P - 4, y: y(f) + 3, "font-size": 10, "text-anchor": "end" }, svg).textContent = txt;
    }
    el("text", { x: x(0.5), y: S + 36, "font-size": 11, "text-anchor": "middle" }, svg).textContent =
      "fraction < 0.1";
    el("text", { x: 10, y: y(0.5), "font-size": 11, "text-anchor": "middle",
                 transform: "rotate(-90 10 " + y(0.5) + ")" }, svg).textContent = "fraction > 0.9";
    D.saturation[gate].forEach((units, k) => {
      units.forEach(([lo, hi], u) => {
        const c = el("circle", { cx: x(lo), cy: y(hi), r: 3, fill: colours[k % colours.length] }, svg);
        c.dataset.unit = "L" + (k + 1) + ":" + u;
        el("title", {}, c).textContent = "L" + (k + 1) + ":" + u + " " + gate + " gate: " +
          (lo * 100).toFixed(0) + "% < 0.1, " + (hi * 100).toFixed(0) + "% > 0.9";
        c.addEventListener("click", () => selectByName(c.dataset.unit));
      });
    });
    fig.appendChild(svg);
    const cap = document.createElement("figcaption");
    cap.textContent = gate + " gate";
    fig.appendChild(cap);
    box.appendChild(fig);
  }
  const key = document.createElement("p");
  key.className = "note";
  key.innerHTML = Array.from({ length: D.layers }, (_, k) =>
    "<span style='color:" + colours[k % colours.length] + "'>&#9679;</span> layer " + (k + 1)).join(" &nbsp; ");
  box.after(key);
})();

// ---- header, then the state the URL asks for ----
$("title").textContent = "charrnn inspect: " + D.run;
$("meta").innerHTML = "";
const meta = [
  ["mean", D.bpc === null ? "-" : D.bpc.toFixed(3) + " bpc"],
  ["over", D.chars_scored.toLocaleString("en") + " of " + T.toLocaleString("en") + " characters"],
  ["text", D.source],
  ["model", D.model],
  ["checkpoint", D.checkpoint],
];
meta.forEach(([k, v], i) => {
  const b = document.createElement("b");
  b.textContent = v;
  $("meta").append((i ? " \u00b7 " : "") + k + " ", b);
});

function fromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("pos")) {  // a shared link to one character: pin it and bring it into view
    const p = parseInt(params.get("pos"), 10);
    if (p >= 0 && p < T) {
      state.pos = p;
      state.pinned = true;
      const box = spans[p].getBoundingClientRect();
      if (box.top < 60 || box.bottom > window.innerHeight) spans[p].scrollIntoView({ block: "center" });
    }
  }
  if (!(params.has("unit") && selectByName(params.get("unit"), true))) {
    state.mode = "surprise";
    fillUnitList();
    colour();
  }
}
state.pos = D.bits[0] === null ? Math.min(1, T - 1) : 0;
(async function main() {
  try {
    ACTS = await inflate(D.states);
  } catch (err) {
    $("panel").textContent = "This browser cannot unpack the activations (" + err + "); use a current browser.";
    return;
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
</script>
</body>
</html>
"""
