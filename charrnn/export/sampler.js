"use strict";
// The model of an exported charrnn page: its weights (inlined in the page), charrnn.stepper's step equations
// (PyTorch's nn.RNN, nn.GRU, nn.LSTM) computed in float64 from float32 (or float16) weights, and charrnn.sampling's
// choice of the next character. page.js drives it from the page's controls.
const $ = (id) => document.getElementById(id);
const M = JSON.parse($("model").textContent);
const V = M.vocab.length;
const INDEX = new Map(M.vocab.map((ch, i) => [ch, i]));
const SEPARATOR = "\n" + "-".repeat(40) + "\n"; // between samples, as `charrnn sample --num-samples N` prints them

// ---- the weights: deflated byte planes in base64 ----
async function inflate(b64) {
  const bin = atob(b64), bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function unshuffle(planes, width) { // all first bytes, all second bytes, ... back to whole values
  const n = planes.length / width, out = new Uint8Array(planes.length);
  for (let b = 0; b < width; b++) {
    for (let i = 0, p = b * n; i < n; i++) out[i * width + b] = planes[p + i];
  }
  return out;
}

function halfToFloat(halves) {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
    if (e === 0) table[h] = sign * f * 2 ** -24;
    else if (e === 31) table[h] = f ? NaN : sign * Infinity;
    else table[h] = sign * (1 + f / 1024) * 2 ** (e - 15);
  }
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]];
  return out;
}

async function loadArrays() {
  const width = M.dtype === "f16" ? 2 : 4;
  const bytes = unshuffle(await inflate($("weights").textContent.trim()), width);
  const values = width === 2 ? halfToFloat(new Uint16Array(bytes.buffer)) : new Float32Array(bytes.buffer);
  const arrays = {};
  for (const [name, [offset, size]] of Object.entries(M.arrays)) arrays[name] = values.subarray(offset, offset + size);
  return arrays;
}

// ---- the network ----
// Every array lives in one Float32Array heap (the kernel's WebAssembly memory), each matrix row padded with zeros to
// 16 floats; kernel.matvec(w, rows, stride, x, base, out), offsets in floats: out[r] = base[r] + w[r, :] . x.
const pad16 = (n) => Math.ceil(n / 16) * 16;

function jsMatvec(heap, w, rows, stride, x, base, out) {
  for (let r = 0, o = w; r < rows; r++, o += stride) {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let j = 0; j < stride; j += 4) {
      s0 += heap[o + j] * heap[x + j];
      s1 += heap[o + j + 1] * heap[x + j + 1];
      s2 += heap[o + j + 2] * heap[x + j + 2];
      s3 += heap[o + j + 3] * heap[x + j + 3];
    }
    heap[out + r] = heap[base + r] + ((s0 + s1) + (s2 + s3));
  }
}

// The WebAssembly SIMD kernel (charrnn/export/wasm.py) where the browser runs it, else the same loop in JavaScript.
function makeKernel(floats, engine) {
  const code = Uint8Array.from(atob(M.kernel), (c) => c.charCodeAt(0));
  if (engine !== "js" && typeof WebAssembly === "object" && WebAssembly.validate(code)) {
    const memory = new WebAssembly.Memory({ initial: Math.ceil((floats * 4) / 65536) + 1 });
    const f = new WebAssembly.Instance(new WebAssembly.Module(code), { env: { memory } }).exports.matvec;
    return { heap: new Float32Array(memory.buffer), engine: "wasm-simd",
      matvec: (w, rows, stride, x, base, out) => f(4 * w, rows, 4 * stride, 4 * x, 4 * base, 4 * out) };
  }
  const heap = new Float32Array(floats);
  return { heap, engine: "js", matvec: (w, rows, stride, x, base, out) => jsMatvec(heap, w, rows, stride, x, base, out) };
}

class Layout { // where each array goes in the heap, then the copies that put it there
  constructor() { this.size = 0; this.copies = []; }
  take(n) { const at = this.size; this.size += pad16(n); return at; }
  vector(values) {
    const at = this.take(values.length);
    this.copies.push((heap) => heap.set(values, at));
    return at;
  }
  matrix(values, rows) {
    const cols = values.length / rows, stride = pad16(cols), at = this.take(rows * stride);
    this.copies.push((heap) => {
      for (let r = 0; r < rows; r++) heap.set(values.subarray(r * cols, (r + 1) * cols), at + r * stride);
    });
    return { at, stride };
  }
}

class Net {
  constructor(m, A, engine) {
    this.cell = m.cell;
    this.relu = m.nonlinearity === "relu";
    this.L = m.layers;
    const H = (this.H = m.hidden), G = (this.G = { rnn: 1, gru: 3, lstm: 4 }[m.cell] * m.hidden);
    const room = new Layout(), E = A.emb ? A.emb.length / V : 0;
    this.layers = [];
    for (let k = 0; k < this.L; k++) {
      this.layers.push({ w_hh: room.matrix(A["w_hh" + k], G), b_hh: A["b_hh" + k] && room.vector(A["b_hh" + k]),
        w_ih: k > 0 && room.matrix(A["w_ih" + k], G), b_in: k > 0 && room.vector(A["b_in" + k]) });
    }
    this.table = A.table ? room.vector(A.table) : room.take(V * G);
    const first = A.table ? null : { w_ih: room.matrix(A.w_ih0, G), b_in: room.vector(A.b_in0) };
    this.head = room.matrix(A.head_w || A.emb, V); // a tied head is the embedding
    this.headB = room.vector(A.head_b);
    this.X = room.take(Math.max(H, E));
    this.PRE = room.take(G);
    this.GH = room.take(G);
    this.LOGITS = room.take(V);
    this.kernel = makeKernel(room.size, engine);
    for (const copy of room.copies) copy(this.kernel.heap);
    if (first) this.buildTable(A.emb, E, first);
    this.logits = this.kernel.heap.subarray(this.LOGITS, this.LOGITS + V);
  }

  // The first layer's input projection for every character, one row each (V, G): b_in + W_ih emb[x].
  buildTable(emb, E, first) {
    const heap = this.kernel.heap;
    for (let v = 0; v < V; v++) {
      heap.set(emb.subarray(v * E, (v + 1) * E), this.X);
      this.kernel.matvec(first.w_ih.at, this.G, first.w_ih.stride, this.X, first.b_in, this.table + v * this.G);
    }
    heap.fill(0, this.X, this.X + pad16(Math.max(this.H, E))); // the padding the other products read must be 0
  }

  zeroState() {
    const zeros = () => Array.from({ length: this.L }, () => new Float64Array(this.H));
    return { h: zeros(), c: this.cell === "lstm" ? zeros() : null };
  }

  static copy(state) {
    return { h: state.h.map((a) => a.slice()), c: state.c && state.c.map((a) => a.slice()) };
  }

  // Read character `id`, advance `state` in place; the logits for the next character (a view, reused).
  step(id, state) {
    const { H, G, X, PRE, GH, kernel } = this, heap = kernel.heap;
    let below = null;
    for (let k = 0; k < this.L; k++) {
      const layer = this.layers[k], h = state.h[k];
      if (k === 0) heap.copyWithin(PRE, this.table + id * G, this.table + (id + 1) * G);
      else {
        heap.set(below, X);
        kernel.matvec(layer.w_ih.at, G, layer.w_ih.stride, X, layer.b_in, PRE);
      }
      heap.set(h, X);
      if (this.cell === "gru") {
        kernel.matvec(layer.w_hh.at, G, layer.w_hh.stride, X, layer.b_hh, GH);
        for (let j = 0; j < H; j++) {
          const r = sigmoid(heap[PRE + j] + heap[GH + j]), z = sigmoid(heap[PRE + H + j] + heap[GH + H + j]);
          const n = Math.tanh(heap[PRE + 2 * H + j] + r * heap[GH + 2 * H + j]);
          h[j] = n + z * (h[j] - n);
        }
      } else {
        kernel.matvec(layer.w_hh.at, G, layer.w_hh.stride, X, PRE, PRE);
        if (this.cell === "lstm") {
          const c = state.c[k];
          for (let j = 0; j < H; j++) { // PyTorch's gate order: i, f, g, o
            c[j] = sigmoid(heap[PRE + H + j]) * c[j] + sigmoid(heap[PRE + j]) * Math.tanh(heap[PRE + 2 * H + j]);
            h[j] = sigmoid(heap[PRE + 3 * H + j]) * Math.tanh(c[j]);
          }
        } else {
          for (let j = 0; j < H; j++) h[j] = this.relu ? Math.max(heap[PRE + j], 0) : Math.tanh(heap[PRE + j]);
        }
      }
      below = h;
    }
    heap.set(below, X);
    kernel.matvec(this.head.at, V, this.head.stride, X, this.headB, this.LOGITS);
    return this.logits;
  }
}
const sigmoid = (x) => 1 / (1 + Math.exp(-x));

// ---- choosing the next character: charrnn.sampling's temperature, then top-k, then top-p ----
const scaled = new Float64Array(V), cumulative = new Float64Array(V);

function argmax(x) {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

function softmax(x) {
  let max = -Infinity, sum = 0;
  for (let i = 0; i < x.length; i++) max = Math.max(max, x[i]);
  const p = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) sum += p[i] = Math.exp(x[i] - max);
  for (let i = 0; i < x.length; i++) p[i] /= sum;
  return p;
}

function filterLogits(logits, o) { // into `scaled`; excluded characters become -Infinity
  const x = scaled;
  x.set(logits);
  if (o.temperature !== 1) { // shifted so that the largest is 0, then scaled by 1/T (its limit where 1/T overflows)
    const max = x[argmax(x)], scale = 1 / o.temperature;
    for (let i = 0; i < V; i++) x[i] = Number.isFinite(scale) ? (x[i] - max) * scale : x[i] < max ? -Infinity : 0;
  }
  if (o.topK !== null && o.topK < V) {
    const kth = Float64Array.from(x).sort()[V - o.topK];
    for (let i = 0; i < V; i++) if (x[i] < kth) x[i] = -Infinity;
  }
  if (o.topP !== null && o.topP < 1) { // the smallest prefix whose mass reaches top-p; the likeliest always stays
    const order = Array.from(x.keys()).sort((a, b) => x[b] - x[a] || a - b);
    const probs = softmax(order.map((i) => x[i]));
    let before = 0;
    order.forEach((i, n) => {
      if (n > 0 && before >= o.topP) x[i] = -Infinity;
      before += probs[n];
    });
  }
  return x;
}

function chooseNext(logits, o, random) {
  if (o.greedy) return argmax(logits);
  const x = filterLogits(logits, o);
  let max = -Infinity, total = 0;
  for (let i = 0; i < V; i++) max = Math.max(max, x[i]);
  for (let i = 0; i < V; i++) cumulative[i] = total += Math.exp(x[i] - max);
  const u = random() * total; // the first entry whose cumulative mass exceeds u: never one of probability 0
  for (let i = 0; i < V; i++) if (cumulative[i] > u) return i;
  return argmax(x);
}

// A seeded generator (sfc32, seeded by the cyrb128 hash of "seed:sample"): the same seed gives the same text.
function seededRandom(seed, sample) {
  const str = seed + ":" + sample;
  let h1 = 1779033703, h2 = 3144134277, h3 = 1013904242, h4 = 2773480762;
  for (let i = 0; i < str.length; i++) {
    const k = str.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  let a = Math.imul(h3 ^ (h1 >>> 18), 597399067), b = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  let c = Math.imul(a ^ (h3 >>> 17), 951274213), d = Math.imul(b ^ (h4 >>> 19), 2716044179);
  a ^= b ^ c ^ d; b ^= a; c ^= a; d ^= a;
  const next = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 15; i++) next();
  return next;
}
