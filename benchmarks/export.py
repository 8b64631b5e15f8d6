"""What `charrnn export` gives a 2x256 LSTM trained a minute on Shakespeare: the page's size (fp32, fp16), its
single-stream sampling speed in headless Chromium after warm-up (WebAssembly SIMD kernel, and the plain-JavaScript
fallback), onnxruntime's speed for 1 and 64 streams, and `charrnn sample`'s (torch) beside them. All sample at
temperature 0.8.

    python benchmarks/export.py [--run runs/export-bench] [--length 5000]

The run is trained first where it is missing:
    charrnn train --config configs/shakespeare.yaml --data data/tinyshakespeare.txt --set train.time_budget=60
                  --set model.hidden_size=256 --name export-bench
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from charrnn.device import describe_cpu
from charrnn.export import onnx_metadata
from charrnn.export.onnx_graph import build_model
from charrnn.export.page import render_page
from charrnn.export.weights import step_weights
from charrnn.inspection.recording import describe_model
from charrnn.sampling import SamplingOptions, generate
from charrnn.trained import load

REPO = Path(__file__).resolve().parent.parent
TRAIN = ["--config", str(REPO / "configs/shakespeare.yaml"), "--data", str(REPO / "data/tinyshakespeare.txt"),
         "--set", "train.time_budget=60", "--set", "model.hidden_size=256", "--quiet"]
PRIME = "ROMEO:"


class Chromium:
    """Headless Chromium driven over --remote-debugging-pipe (it reads commands on fd 3, answers on fd 4), so that
    the page runs in real time (--dump-dom's virtual time stops the clock while scripts run)."""

    def __init__(self, binary: str):
        self.profile = tempfile.mkdtemp(prefix="charrnn-bench-")
        commands_in, self.commands = os.pipe()
        self.answers, answers_out = os.pipe()

        def on_fds_3_and_4():
            os.dup2(commands_in, 3)
            os.dup2(answers_out, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={self.profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4, commands_in, answers_out), preexec_fn=on_fds_3_and_4,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands_in)
        os.close(answers_out)
        self.buffer, self.last_id = b"", 0

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.answers, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its pipe")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self.last_id:
                if "error" in answer:
                    raise RuntimeError(answer["error"])
                return answer["result"]

    def open(self, url: str) -> str:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        return self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def screenshot(self, url: str, path: Path, width: int, height: int) -> None:
        """A PNG of the page at url once it has finished generating (document.body.dataset.state)."""
        session = self.open("about:blank")
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session)
        self.send("Page.navigate", {"url": url}, session)
        while self.evaluate(session, "document.body && document.body.dataset.state") not in ("done", "error"):
            time.sleep(0.2)
        png = self.send("Page.captureScreenshot", {"format": "png"}, session)["data"]
        path.write_bytes(base64.b64decode(png))

    def evaluate(self, session: str, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):  # it may close the pipe before it answers
            self.send("Browser.close")
        self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


def page_speed(page: Path, engine: str, length: int) -> float:
    """chars/s of one stream in the page, the best of three after a warm-up of 2,000 characters."""
    browser = Chromium(shutil.which("chromium") or shutil.which("google-chrome") or "chromium")
    try:
        session = browser.open(page.resolve().as_uri() + ("#engine=js" if engine == "js" else ""))
        for _ in range(100):
            if browser.evaluate(session, "typeof charrnn === 'object'"):
                break
            time.sleep(0.1)
        assert browser.evaluate(session, "charrnn.ready.then((net) => net.kernel.engine)") == engine

        def run(n: int) -> float:
            return browser.evaluate(session, f"charrnn.generate({{prime: {json.dumps(PRIME)}, length: {n}, "
                                             "temperature: 0.8, seed: 1}).then((r) => r.charsPerSec)")

        run(2000)
        return max(run(length) for _ in range(3))
    finally:
        browser.close()


def onnx_speed(path: Path, streams: int, length: int) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()[1:]]
    layers, _, hidden = session.get_inputs()[1].shape
    rng = np.random.default_rng(0)

    def run(n: int) -> float:
        state = {name: np.zeros((layers, streams, hidden), np.float32) for name in names}
        x = np.zeros(streams, np.int64)
        start = time.perf_counter()
        for _ in range(n):
            logits, *new = session.run(None, {"ids": x, **state})
            state = dict(zip(names, new, strict=True))
            p = np.exp((logits - logits.max(-1, keepdims=True)) / 0.8)
            cdf = np.cumsum(p, -1)
            x = (cdf < rng.random((streams, 1)) * cdf[:, -1:]).sum(-1)
        return streams * n / (time.perf_counter() - start)

    run(200)
    return run(length)


def torch_speed(model, streams: int, length: int) -> float:
    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in generate(model.net, model.vocab, prime=PRIME, length=n, opts=SamplingOptions(temperature=0.8),
                          num_samples=streams, seed=0):
            pass
        return streams * n / (time.perf_counter() - start)

    run(200)
    return run(length)


def screenshot(model, path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp, "page.html")
        page.write_bytes(render_page(model))
        browser = Chromium(shutil.which("chromium") or "chromium")
        try:
            fragment = "#prime=ROMEO:&length=1000&temperature=0.8&top_p=0.95&seed=4&run=1"
            browser.screenshot(page.resolve().as_uri() + fragment, path, 1200, 900)
        finally:
            browser.close()
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "export-bench")
    parser.add_argument("--length", type=int, default=5000)
    parser.add_argument("--screenshot", type=Path, help="only write a PNG of the page (1200x900) there")
    args = parser.parse_args()
    if not args.run.exists():
        subprocess.run([sys.executable, "-m", "charrnn", "train", *TRAIN, "--run-dir", str(args.run)], check=True)
    model = load(args.run)
    if args.screenshot:
        return screenshot(model, args.screenshot)
    params = sum(p.numel() for p in model.net.parameters())
    print(f"CPU: {describe_cpu()}; {torch.get_num_threads()} torch threads")
    print(f"model: {describe_model(model.net)}, V={len(model.vocab)}, {params:,} parameters, "
          f"val loss {model.state['best_val']:.3f} (step {model.state['step']})")
    with tempfile.TemporaryDirectory() as tmp:
        pages, onnx_files = {}, {}
        for weights in ("fp32", "fp16"):
            pages[weights] = Path(tmp, f"{weights}.html")
            pages[weights].write_bytes(render_page(model, weights))
            onnx_files[weights] = Path(tmp, f"{weights}.onnx")
            graph = build_model(step_weights(model.net), onnx_metadata(model, weights), fp16=weights == "fp16")
            onnx_files[weights].write_bytes(graph.SerializeToString())
        mb = {name: {w: p.stat().st_size / 1e6 for w, p in files.items()}
              for name, files in (("page", pages), ("onnx", onnx_files))}
        print(f"page size: fp32 {mb['page']['fp32']:.2f} MB, fp16 {mb['page']['fp16']:.2f} MB; "
              f"ONNX file: fp32 {mb['onnx']['fp32']:.2f} MB, fp16 {mb['onnx']['fp16']:.2f} MB")
        rows = [("page, headless Chromium, WebAssembly SIMD", 1, page_speed(pages["fp32"], "wasm-simd", args.length)),
                ("page, headless Chromium, plain JavaScript", 1, page_speed(pages["fp32"], "js", args.length // 5))]
        for streams in (1, 64):
            rows.append(("onnxruntime + numpy sampling", streams,
                         onnx_speed(onnx_files["fp32"], streams, args.length // (1 if streams == 1 else 10))))
        for streams in (1, 64):
            rows.append(("charrnn sample (torch)", streams,
                         torch_speed(model, streams, args.length // (1 if streams == 1 else 10))))
    print(f"{'sampler (temperature 0.8)':<46}{'streams':>8}{'chars/s':>12}")
    for name, streams, speed in rows:
        print(f"{name:<46}{streams:>8}{speed:>12,.0f}")


if __name__ == "__main__":
    main()
