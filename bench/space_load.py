"""Bounded load test of the Space: N `/predict` calls, C at a time, against the app on 127.0.0.1 only.

    python bench/space_load.py --model runs/default/model                 # starts space/app.py on a free port
    python bench/space_load.py --url http://127.0.0.1:7860/               # an app you already started locally
    python bench/space_load.py --tiny-random                              # a tiny random model (no training needed)
    python bench/space_load.py --model runs/default/model --write-docs    # + 50 single-user calls, into docs/

Prints one JSON object: requests, concurrency, errors (with the first messages), latency p50/p95/max in seconds
(from the client's call to its answer, queueing included) and throughput. Each of the C worker threads has its own
`gradio_client.Client`, as C separate users would; client start-up is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = ("127.0.0.1", "localhost")

TEXTS = [
    "Ticket #{i}: I was charged twice for my subscription and nobody answers. Please refund me today.",
    "Just got the acceptance letter number {i}!!! I can't stop smiling, thank you all so much.",
    "Hi Sam, I'm so sorry to hear about your loss ({i}). Let me know if there is anything I can do.",
    "Why does the app crash every time I open settings? Version {i} was fine. This is ridiculous.",
    "Wow, I did not expect that ending at all, episode {i} was amazing!",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_tiny_model(folder: Path) -> Path:
    """A tiny randomly initialised emo_hf model saved to `folder`: tests/conftest.py's tiny Mistral and word-level
    tokenizer, the 15 default labels. Its predictions mean nothing; it measures the app, not a model."""
    import torch
    from transformers import MistralConfig, MistralModel

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    sys.path.insert(0, str(REPO_ROOT))
    from conftest import TINY_WORDS, make_word_tokenizer  # noqa: PLC0415  (the tests' tiny tokenizer)

    from emo_hf.labels import DEFAULT_LABELS
    from emo_hf.modeling import EmoModelForMultiLabel

    backbone = folder.parent / "tiny-mistral"
    config = MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=8, vocab_size=len(TINY_WORDS), pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, max_position_embeddings=256,
                           rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    torch.manual_seed(0)
    MistralModel(config).save_pretrained(backbone)
    make_word_tokenizer().save_pretrained(backbone)
    model = EmoModelForMultiLabel.from_backbone(str(backbone), labels=list(DEFAULT_LABELS), max_length=64)
    model.save_pretrained(folder)
    return folder


def start_app(model: str, port: int, timeout_s: float = 180.0) -> subprocess.Popen:
    """`python space/app.py` serving `model` on 127.0.0.1:`port`; returns once it answers HTTP."""
    env = dict(os.environ, EMO_HF_MODEL=model, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False")
    # Its output goes to a file, not a pipe nobody reads (a full pipe would stall the app mid-test).
    log = tempfile.NamedTemporaryFile("w+", prefix="emo_hf_space_", suffix=".log", delete=False)
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "space" / "app.py")], env=env,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"space/app.py exited with {process.returncode}: "
                               f"{Path(log.name).read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise TimeoutError(f"space/app.py did not answer on port {port} within {timeout_s:.0f} s; log: {log.name}")


def run_load(url: str, requests: int = 200, concurrency: int = 8, threshold_shift: float = 0.0) -> dict:
    """Send `requests` `/predict` calls, `concurrency` at a time; latency statistics and errors."""
    from gradio_client import Client

    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in LOCAL_HOSTS:
        raise ValueError(f"--url {url!r} is not on 127.0.0.1: this load test only runs against a local app, "
                         "e.g. --url http://127.0.0.1:7860/")
    local = threading.local()

    def client() -> Client:
        if not hasattr(local, "client"):
            local.client = Client(url, verbose=False)
        return local.client

    def one(i: int) -> tuple[float, str | None]:
        c = client()
        start = time.perf_counter()
        try:
            label, *_ = c.predict(TEXTS[i % len(TEXTS)].format(i=i), threshold_shift, api_name="/predict")
            confidences = label["confidences"]
            if not confidences or not all(0.0 <= row["confidence"] <= 1.0 for row in confidences):
                return time.perf_counter() - start, f"request {i}: bad answer {label!r:.200}"
            return time.perf_counter() - start, None
        except Exception as error:  # noqa: BLE001  (counted and reported, the run goes on)
            return time.perf_counter() - start, f"request {i}: {type(error).__name__}: {error}"

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: client(), range(concurrency)))  # connect every worker first (not timed)
        start = time.perf_counter()
        results = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - start
    latencies = np.array([seconds for seconds, error in results if error is None])
    errors = [error for _, error in results if error is not None]
    return {
        "requests": requests,
        "concurrency": concurrency,
        "errors": len(errors),
        "first_errors": errors[:5],
        "p50_s": round(float(np.percentile(latencies, 50)), 3) if len(latencies) else None,
        "p95_s": round(float(np.percentile(latencies, 95)), 3) if len(latencies) else None,
        "max_s": round(float(latencies.max()), 3) if len(latencies) else None,
        "wall_s": round(wall, 2),
        "requests_per_s": round(requests / wall, 2),
    }


SECTION = "## Space: load test"


def machine() -> str:
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU") \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def docs_section(command: str, model_note: str, runs: list[dict], load: tuple[float, float]) -> str:
    """The "Space: load test" section of docs/benchmarks.md for these runs."""
    import gradio
    import torch

    rows = "\n".join(
        f"| {r['requests']} | {r['concurrency']} | {r['errors']} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | "
        f"{r['max_s']:.3f} | {r['requests_per_s']:.1f} |" for r in runs)
    return f"""{SECTION}

Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} on the {"GPU" if torch.cuda.is_available() else "CPU"} \
machine ({machine()}), gradio {gradio.__version__},
torch {torch.__version__} (1-min load average {load[0]:.1f} before, {load[1]:.1f} after; above the core count
means other jobs shared the cores and the latencies are pessimistic). Command: `{command}`.

The script starts `python space/app.py` on a free port of 127.0.0.1 (the Space's own entry point, the model loaded
from `EMO_HF_MODEL`) and sends `/predict` calls through `gradio_client`, one `Client` per worker thread; latency is
from the call to its answer, queueing included, and every answer is checked (all labels, probabilities in [0, 1]).
The app runs with its defaults: gradio queue, 2 events at a time (`EMO_HF_SPACE_CONCURRENCY`), `predict` serialized.
The last row is one user alone, for reference.

{model_note}

| requests | concurrency | errors | p50 (s) | p95 (s) | max (s) | throughput (req/s) |
|---|---|---|---|---|---|---|
{rows}
"""


def write_docs(section: str, docs: Path = REPO_ROOT / "docs" / "benchmarks.md") -> None:
    """Replace (or append) this benchmark's section of docs/benchmarks.md, keeping every other section."""
    current = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
    if SECTION in current:
        head, rest = current.split(SECTION, 1)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        current = head.rstrip() + "\n\n" + section.rstrip() + "\n" + tail
    else:
        current = current.rstrip() + "\n\n" + section
    docs.parent.mkdir(exist_ok=True)
    tmp = docs.with_suffix(".md.tmp")
    tmp.write_text(current, encoding="utf-8")
    os.replace(tmp, docs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="a running local app, e.g. http://127.0.0.1:7860/")
    source.add_argument("--model", help="model folder or Hub id: start space/app.py with it on a free port")
    source.add_argument("--tiny-random", action="store_true", help="start the app on a tiny random model")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--write-docs", action="store_true",
                        help="also run 50 requests one at a time and write both into docs/benchmarks.md")
    args = parser.parse_args(argv)

    process = None
    load_before = os.getloadavg()[0]
    try:
        url, model = args.url, args.model
        if args.tiny_random:
            model = str(make_tiny_model(Path(tempfile.mkdtemp(prefix="emo_hf_tiny_")) / "model"))
        if url is None:
            port = free_port()
            process = start_app(model, port)
            url = f"http://127.0.0.1:{port}/"
        runs = [run_load(url, args.requests, args.concurrency)]
        if args.write_docs:
            runs.append(run_load(url, 50, 1))
        for result in runs:
            result["model"] = model or url
            print(json.dumps(result, indent=2))
        if args.write_docs:
            if any(r["p50_s"] is None for r in runs):
                raise SystemExit("every request failed: nothing written to docs/benchmarks.md")
            note = ("**Model: a tiny randomly initialised emo_hf model** (2-layer Mistral, hidden size 32, the tests' "
                    "word-level tokenizer, 15 labels), *not* a trained one. This measures the app and queue "
                    "overhead, not a real backbone; rerun with `--model runs/default/model` for the trained "
                    "default model." if args.tiny_random else f"**Model:** `{model or url}`.")
            command = "python bench/space_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
            write_docs(docs_section(command, note, runs, (load_before, os.getloadavg()[0])))
            print("wrote docs/benchmarks.md")
        return 1 if any(r["errors"] for r in runs) else 0
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
