"""Benchmark: ISMOTE balancing time on the full GoEmotions train split, and sentence-embedding throughput.

    python bench/balance.py                       # GoEmotions from $EMO_HF_GOEMOTIONS or ../shared/goemotions
    python bench/balance.py --embed-texts 2000 --write-docs

Balancing is timed given precomputed embeddings (read from the on-disk cache, embedded first if missing): what
`emo-hf data build` spends once the cache is warm. Embedding throughput is measured on the first N train texts with a
fresh temporary cache (model load timed separately). `--write-docs` replaces the section "Data: balancing and
embedding" of docs/benchmarks.md with the numbers, the date, the command and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SECTION = "## Data: balancing and embedding"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.environ.get("EMO_HF_GOEMOTIONS") or str(REPO.parent / "shared" / "goemotions"))
    parser.add_argument("--repeats", type=int, default=5, help="balancing runs per method (median reported)")
    parser.add_argument("--embed-texts", type=int, default=2000, help="texts embedded cold for the throughput number")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--machine", default="2-core CPU dev machine")
    parser.add_argument("--write-docs", action="store_true", help="write the results into docs/benchmarks.md")
    args = parser.parse_args()


    from emo_hf.data.balancing import balance
    from emo_hf.data.embedding import DEFAULT_ENCODER, embed_texts, load_encoder
    from emo_hf.data.loading import column_values, label_matrix, load_goemotions

    dataset = load_goemotions(args.source)
    train = dataset["train"]
    texts = column_values(train, "text")
    labels = label_matrix(train)  # [43410, 15]
    start = time.perf_counter()
    embeddings = embed_texts(texts, show_progress=True)  # [43410, 384], from the cache when warm
    cache_seconds = time.perf_counter() - start
    print(f"train: {len(texts):,} rows, embeddings {embeddings.shape} (cache read / embed: {cache_seconds:.2f} s)")

    results = {}
    for method in ("ismote", "smote", "random"):
        times = []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            result = balance(embeddings, labels, method=method, seed=42 + repeat, show_progress=False)
            times.append(time.perf_counter() - start)
        results[method] = (statistics.median(times), min(times), int(result.is_synthetic.sum()), len(result.labels))
        print(f"balance {method:7s}: median {results[method][0]:.3f} s, min {results[method][1]:.3f} s over {args.repeats} runs; "
              f"{results[method][2]:,} synthetic rows, {results[method][3]:,} train rows after")

    start = time.perf_counter()
    model = load_encoder(DEFAULT_ENCODER)
    load_seconds = time.perf_counter() - start
    sample = texts[: args.embed_texts]
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        vectors = embed_texts(sample, cache_dir=cache, batch_size=args.batch_size, model=model, show_progress=True)
        embed_seconds = time.perf_counter() - start
    throughput = len(sample) / embed_seconds
    print(f"embedding: model load {load_seconds:.2f} s; {len(sample):,} texts in {embed_seconds:.2f} s = {throughput:.0f} texts/s "
          f"(dim {vectors.shape[1]}, batch {args.batch_size}); full 54,263 texts ≈ {54263 / throughput / 60:.1f} min")

    if args.write_docs:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        command = "python bench/balance.py " + " ".join(sys.argv[1:])
        text = f"""{SECTION}

Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} on the {args.machine} ({os.cpu_count()} cores,
{platform.processor() or platform.machine()}, Python {platform.python_version()}; 1-min load average {load:.1f} at the end:
other jobs shared the cores). Command: `{command.strip()}`.

Balancing the full GoEmotions train split (43,410 rows, 15 default labels, target 1500 per label, keep 0.5 of the
no-emotion rows, k=5), given precomputed MiniLM embeddings; median of {args.repeats} seeded runs:

| method | median (s) | min (s) | synthetic rows | train rows after |
|---|---|---|---|---|
""" + "".join(
            f"| {m} | {results[m][0]:.3f} | {results[m][1]:.3f} | {results[m][2]:,} | {results[m][3]:,} |\n" for m in results
        ) + f"""
Embedding throughput (sentence-transformers/all-MiniLM-L6-v2, CPU, batch {args.batch_size}, first {len(sample):,}
train texts, cold cache): **{throughput:.0f} texts/s** (model load {load_seconds:.1f} s). At that rate the 54,263
GoEmotions texts take about {54263 / throughput / 60:.1f} min cold; with the on-disk cache warm, reading all train
embeddings took {cache_seconds:.2f} s.
"""
        docs = REPO / "docs" / "benchmarks.md"
        docs.parent.mkdir(exist_ok=True)
        current = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
        if SECTION in current:
            head, rest = current.split(SECTION, 1)
            tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
            current = head.rstrip() + "\n\n" + text + tail
        else:
            current = current.rstrip() + "\n\n" + text
        docs.write_text(current, encoding="utf-8")
        print(f"wrote {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
