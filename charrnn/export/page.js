// The page: settings from the form or the address (#prime=ROMEO:&length=300&greedy=1&run=1), text streamed into
// #output, document.body.dataset.state (loading, ready, running, done, error), and window.charrnn for scripts.
const SLICE_MS = 25; // generate this long (or SLICE_CHARS), then let the page draw and take clicks
const SLICE_CHARS = 1024;
const ALIASES = { "top-k": "top_k", topk: "top_k", "top-p": "top_p", topp: "top_p", num_samples: "samples",
  "num-samples": "samples" };
const SETTINGS = ["prime", "length", "temperature", "top_k", "top_p", "greedy", "seed", "samples"];
const MAX_SEED = 2n ** 64n - 1n; // as `charrnn sample --seed`

function describeChar(ch) {
  const hex = "U+" + ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
  const named = { "\n": "'\\n'", "\t": "'\\t'", "\r": "'\\r'", " ": "' '" }[ch];
  if (named) return named;
  return /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u.test(ch) ? `'${ch}' (${hex})` : hex;
}

function encode(text, what) {
  return Array.from(text, (ch) => {
    if (!INDEX.has(ch)) {
      throw new Error(`${what}: character ${describeChar(ch)} is not in the model's vocabulary of ${V} characters; ` +
        "use only characters from the training text");
    }
    return INDEX.get(ch);
  });
}

const blank = (v) => v === undefined || v === null || String(v).trim() === "";
function whole(value, name, min) {
  const s = String(value).trim();
  if (!/^\d+$/.test(s) || Number(s) < min || !Number.isSafeInteger(Number(s))) {
    throw new Error(`${name} must be a whole number >= ${min}, got '${s}'`);
  }
  return Number(s);
}
function flag(value) {
  if (value === true || value === false) return value;
  return !["0", "false", "no", "off"].includes(String(value ?? "0").trim().toLowerCase());
}

// Settings (strings from the form or the address, or values from a script) -> checked sampling options.
function options(raw) {
  const o = { prime: raw.prime === undefined || raw.prime === null ? M.first_char : String(raw.prime) };
  if (o.prime === "") throw new Error("the prime is empty; type at least one character to start from");
  o.ids = encode(o.prime, "prime");
  o.length = blank(raw.length) ? 500 : whole(raw.length, "length", 0);
  o.temperature = blank(raw.temperature) ? 1 : Number(String(raw.temperature).trim());
  if (!(o.temperature > 0) || !Number.isFinite(o.temperature)) {
    throw new Error(`temperature must be > 0, got '${raw.temperature}'; use greedy for argmax decoding`);
  }
  o.topK = blank(raw.top_k) ? null : whole(raw.top_k, "top-k", 1);
  o.topP = blank(raw.top_p) ? null : Number(String(raw.top_p).trim());
  if (o.topP !== null && !(o.topP > 0 && o.topP <= 1)) throw new Error(`top-p must be in (0, 1], got '${raw.top_p}'`);
  o.greedy = flag(raw.greedy);
  o.samples = blank(raw.samples) ? 1 : whole(raw.samples, "samples", 1);
  if (blank(raw.seed)) {
    const words = crypto.getRandomValues(new Uint32Array(2));
    o.seed = ((BigInt(words[0]) << 32n) | BigInt(words[1])).toString();
    o.randomSeed = true;
  } else {
    const s = String(raw.seed).trim();
    if (!/^\d+$/.test(s) || BigInt(s) > MAX_SEED) throw new Error(`seed must be a whole number from 0 to 2**64 - 1, got '${s}'`);
    o.seed = BigInt(s).toString();
  }
  return o;
}

const nextTask = () => new Promise((resolve) => {
  const channel = new MessageChannel();
  channel.port1.onmessage = () => resolve();
  channel.port2.postMessage(0);
});

let current = null; // the generation in progress: { stopped }
let net = null;

// Generate o.samples texts (prime + o.length characters each); onText(piece, charsPerSec) receives them as they come.
async function generate(raw, onText = () => {}) {
  const o = options(raw), job = { stopped: false };
  net = net || (await ready);
  current = job;
  const warm = net.zeroState(); // the prime is read once; every sample starts from its state
  for (const id of o.ids.slice(0, -1)) net.step(id, warm);
  const texts = [], start = performance.now();
  let made = 0;
  for (let s = 0; s < o.samples && !job.stopped; s++) {
    onText((s > 0 ? SEPARATOR : "") + o.prime, 0);
    const state = Net.copy(warm), random = seededRandom(o.seed, s);
    let x = o.ids[o.ids.length - 1], n = 0, text = o.prime;
    while (n < o.length && !job.stopped) {
      const t0 = performance.now();
      let chunk = "";
      do {
        x = chooseNext(net.step(x, state), o, random);
        chunk += M.vocab[x];
        n++;
      } while (n < o.length && chunk.length < SLICE_CHARS && ((n & 7) !== 0 || performance.now() - t0 < SLICE_MS));
      text += chunk;
      made += chunk.length;
      onText(chunk, (made / (performance.now() - start)) * 1000);
      await nextTask();
    }
    texts.push(text);
  }
  if (current === job) current = null;
  const seconds = (performance.now() - start) / 1000;
  return { texts, seed: o.seed, chars: made, seconds, charsPerSec: made / seconds, stopped: job.stopped };
}

// For each character of text, read from the zero state on: the next character's probabilities (V each).
async function probe(text) {
  net = net || (await ready);
  const state = net.zeroState();
  return encode(text, "probe").map((id) => Array.from(softmax(net.step(id, state)), (p) => Number(p.toPrecision(9))));
}

// ---- the page ----
const setState = (s) => { document.body.dataset.state = s; };
function say(message, error = false) {
  $("status").textContent = message;
  $("status").className = error ? "error" : "";
}
function fail(message) {
  say(message, true);
  setState("error");
}

function parseFragment(hash) {
  const found = { settings: {}, run: false, probe: null, unknown: [] };
  for (const part of hash.replace(/^#/, "").split("&")) {
    if (!part) continue;
    const cut = part.indexOf("=");
    const rawKey = cut < 0 ? part : part.slice(0, cut), rawValue = cut < 0 ? "1" : part.slice(cut + 1);
    const key = decodeURIComponent(rawKey).toLowerCase(), value = decodeURIComponent(rawValue);
    const name = ALIASES[key] || key;
    if (SETTINGS.includes(name)) found.settings[name] = value;
    else if (name === "run") found.run = flag(value);
    else if (name === "probe") found.probe = value;
    else if (name === "engine") continue; // read once, when the weights load

    else found.unknown.push(key);
  }
  return found;
}

function readForm() {
  const raw = {};
  for (const name of SETTINGS) raw[name] = name === "greedy" ? $(name).checked : $(name).value;
  return raw;
}

function fillForm(settings) {
  for (const [name, value] of Object.entries(settings)) {
    if (name === "greedy") $(name).checked = flag(value);
    else $(name).value = value;
  }
}

function shareLink(raw, seed) { // the address that repeats this sample
  const parts = SETTINGS.filter((n) => n === "greedy" ? raw.greedy : !blank(raw[n]) || n === "seed")
    .map((n) => n + "=" + encodeURIComponent(n === "greedy" ? 1 : n === "seed" ? seed : raw[n]));
  history.replaceState(null, "", "#" + [...parts, "run=1"].join("&"));
}

async function run() {
  if (current) return;
  const raw = readForm(), output = $("output");
  const node = document.createTextNode("");
  let result;
  setState("running");
  $("generate").disabled = true;
  $("stop").disabled = false;
  say("generating\u2026");
  try {
    output.replaceChildren(node);
    result = await generate(raw, (piece, speed) => {
      node.appendData(piece);
      if (speed && Number.isFinite(speed)) $("speed").textContent = Math.round(speed).toLocaleString("en") + " chars/s";
    });
  } catch (e) {
    output.replaceChildren();
    return fail(e.message);
  } finally {
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
  $("speed").dataset.charsPerSec = result.charsPerSec.toFixed(1);
  shareLink(raw, result.seed);
  const how = raw.greedy ? "greedy" : `seed ${result.seed}${blank(raw.seed) ? " (random)" : ""}`;
  say(`${result.stopped ? "stopped after" : "generated"} ${result.chars.toLocaleString("en")} characters in ` +
    `${result.seconds.toFixed(2)} s, ${how}` + (result.stopped ? "" : "; the address now repeats this sample"));
  setState("done");
}

function showInfo() {
  const info = M.info;
  $("title").textContent = info.run;
  const meta = $("meta");
  for (const [label, value] of info.facts) {
    const b = document.createElement("b");
    b.textContent = label + " ";
    meta.append(b, value, "\u2003");
  }
}

async function applyFragment() {
  const found = parseFragment(location.hash);
  fillForm(found.settings);
  if (found.unknown.length) say(`unknown setting(s) in the address, ignored: ${found.unknown.join(", ")}`);
  try {
    if (found.probe !== null) $("probe").textContent = JSON.stringify(await probe(found.probe));
  } catch (e) {
    return fail(e.message);
  }
  if (found.run) {
    if (current) current.stopped = true;
    while (current) await nextTask();
    await run();
  } else if (document.body.dataset.state !== "error") {
    setState("ready");
  }
}

// #engine=js: the plain-JavaScript kernel even where WebAssembly SIMD runs (to compare them)
const ENGINE = /(^#|&)engine=js(&|$)/.test(location.hash) ? "js" : "auto";
const ready = loadArrays().then((arrays) => new Net(M, arrays, ENGINE));
window.charrnn = { ready, generate, probe, model: M };

(async function start() {
  showInfo();
  $("prime").value = M.first_char;
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); run(); });
  $("stop").addEventListener("click", () => { if (current) current.stopped = true; });
  try {
    net = await ready;
  } catch (e) {
    return fail("the weights in this page could not be read (" + e.message + "); export the model again");
  }
  document.body.dataset.engine = net.kernel.engine;
  say("ready: press Generate");
  window.addEventListener("hashchange", applyFragment);
  await applyFragment();
})();
