"""Bounded load test of the Space: N `/predict` calls, C at a time, against the app on 127.0.0.1 only.

    python bench/space_load.py --model runs/default/model                 # starts space/app.py on a free port
    python bench/space_load.py --url http://127.0.0.1:7860/               # an app you already started locally
    python bench/space_load.py --tiny-random                              # a tiny random model (no training needed)

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="a running local app, e.g. http://127.0.0.1:7860/")
    source.add_argument("--model", help="model folder or Hub id: start space/app.py with it on a free port")
    source.add_argument("--tiny-random", action="store_true", help="start the app on a tiny random model")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)

    process = None
    try:
        url, model = args.url, args.model
        if args.tiny_random:
            model = str(make_tiny_model(Path(tempfile.mkdtemp(prefix="emo_hf_tiny_")) / "model"))
        if url is None:
            port = free_port()
            process = start_app(model, port)
            url = f"http://127.0.0.1:{port}/"
        result = run_load(url, args.requests, args.concurrency)
        result["model"] = model or url
        print(json.dumps(result, indent=2))
        return 1 if result["errors"] else 0
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
