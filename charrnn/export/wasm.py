"""The exported page's matrix-vector kernel as a WebAssembly module (SIMD: four float32 lanes), written out byte by
byte so that nothing but Python builds it. The module imports its memory (env.memory) and exports one function:

    matvec(w, rows, stride, x, base, out)    out[r] = base[r] + sum_j w[r * stride + j] * x[j], for r < rows

Addresses are byte offsets into the memory; `stride` is the row length in bytes, a multiple of 64 (rows are padded
with zeros to 16 floats, and so is x). Each row is summed in four vector accumulators of four lanes, then across them.
The page falls back to the same loop in plain JavaScript where WebAssembly SIMD is missing (page.js).
"""

from __future__ import annotations

I32, F32, V128 = 0x7F, 0x7D, 0x7B
LOCAL_GET, LOCAL_SET, I32_CONST, I32_ADD, I32_SHL, I32_EQ, I32_NE = 0x20, 0x21, 0x41, 0x6A, 0x74, 0x46, 0x47
BLOCK, LOOP, BR_IF, END, EMPTY = 0x02, 0x03, 0x0D, 0x0B, 0x40
F32_LOAD, F32_STORE, F32_ADD = 0x2A, 0x38, 0x92
SIMD = 0xFD
V128_LOAD, V128_CONST, F32X4_EXTRACT_LANE, F32X4_ADD, F32X4_MUL = 0x00, 0x0C, 0x1F, 0xE4, 0xE6

# parameters, then locals: their indices in the function
W, ROWS, STRIDE, X, BASE, OUT, END_OF_ROW, XP, LAST_OUT, ACC = range(10)  # ACC..ACC+3: the four accumulators
UNROLL = 4


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        done = (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def name(text: str) -> bytes:
    return vec([bytes([b]) for b in text.encode("utf-8")])


def section(sid: int, body: bytes) -> bytes:
    return bytes([sid]) + uleb(len(body)) + body


def get(i: int) -> bytes:
    return bytes([LOCAL_GET]) + uleb(i)


def put(i: int) -> bytes:
    return bytes([LOCAL_SET]) + uleb(i)


def simd(op: int, *immediates: bytes) -> bytes:
    return bytes([SIMD]) + uleb(op) + b"".join(immediates)


def memarg(align_log2: int, offset: int = 0) -> bytes:
    return uleb(align_log2) + uleb(offset)


def advance(local: int, nbytes: int) -> bytes:
    return get(local) + bytes([I32_CONST]) + sleb(nbytes) + bytes([I32_ADD]) + put(local)


def _row_sum() -> bytes:
    """One row: the accumulators over the row's 16-float blocks (a do-while loop), w and xp moved past it."""
    zero = simd(V128_CONST, bytes(16))
    code = b"".join(zero + put(ACC + a) for a in range(UNROLL))
    code += get(X) + put(XP) + get(W) + get(STRIDE) + bytes([I32_ADD]) + put(END_OF_ROW)
    body = b""
    for a in range(UNROLL):  # acc_a += w[16 a ...] * x[16 a ...]
        body += get(ACC + a) + get(W) + simd(V128_LOAD, memarg(2, 16 * a)) + get(XP)
        body += simd(V128_LOAD, memarg(2, 16 * a)) + simd(F32X4_MUL) + simd(F32X4_ADD) + put(ACC + a)
    body += advance(W, 16 * UNROLL) + advance(XP, 16 * UNROLL)
    body += get(W) + get(END_OF_ROW) + bytes([I32_NE, BR_IF, 0])
    return code + bytes([LOOP, EMPTY]) + body + bytes([END])


def _store_row() -> bytes:
    """out[r] = base[r] + ((l0 + l1) + (l2 + l3)) of (acc0 + acc1) + (acc2 + acc3); then base and out move on."""
    code = get(ACC) + get(ACC + 1) + simd(F32X4_ADD) + get(ACC + 2) + get(ACC + 3) + simd(F32X4_ADD)
    code += simd(F32X4_ADD) + put(ACC)
    lanes = [get(ACC) + simd(F32X4_EXTRACT_LANE, bytes([lane])) for lane in range(4)]
    total = lanes[0] + lanes[1] + bytes([F32_ADD]) + lanes[2] + lanes[3] + bytes([F32_ADD, F32_ADD])
    code += get(OUT) + get(BASE) + bytes([F32_LOAD]) + memarg(2) + total + bytes([F32_ADD, F32_STORE]) + memarg(2)
    return code + advance(BASE, 4) + advance(OUT, 4)


def matvec_body() -> bytes:
    code = get(OUT) + get(ROWS) + bytes([I32_CONST]) + sleb(2) + bytes([I32_SHL, I32_ADD]) + put(LAST_OUT)
    rows = _row_sum() + _store_row() + get(OUT) + get(LAST_OUT) + bytes([I32_NE, BR_IF, 0])
    code += bytes([BLOCK, EMPTY]) + get(OUT) + get(LAST_OUT) + bytes([I32_EQ, BR_IF, 0])  # no rows: nothing to do
    code += bytes([LOOP, EMPTY]) + rows + bytes([END, END, END])  # loop, block, function
    local_types = vec([uleb(3) + bytes([I32]), uleb(UNROLL) + bytes([V128])])
    return local_types + code


def module() -> bytes:
    """The whole module: type, import (env.memory), function, export and code sections."""
    functype = bytes([0x60]) + vec([bytes([I32])] * 6) + vec([])
    types = section(1, vec([functype]))
    imports = section(2, vec([name("env") + name("memory") + bytes([0x02, 0x00]) + uleb(1)]))
    functions = section(3, vec([uleb(0)]))
    exports = section(7, vec([name("matvec") + bytes([0x00]) + uleb(0)]))
    body = matvec_body()
    code = section(10, vec([uleb(len(body)) + body]))
    return b"\0asm" + bytes([1, 0, 0, 0]) + types + imports + functions + exports + code
