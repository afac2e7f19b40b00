"""Fault injection for `data build`: SIGKILL a `python -m emo_hf data build` subprocess at seeded random points
(during embedding, balancing or writing), a bounded number of times, then rerun. The rerun must give exactly the rows
(the same parquet bytes) of an uninterrupted build, keep the embedding shards the killed runs finished, and leave no
temporary folder or file behind.

Runs on a slice of the real GoEmotions files (200 train / 60 dev / 60 test rows, 5 labels) with the real default
encoder (all-MiniLM-L6-v2, bundled) and cache shards of 25 texts. Kill points (seeded): two during embedding (after
1-4 new shards plus a random part of the next chunk) and one while the finished files are being written.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from goemotions_path import REPO, SKIP_REASON, goemotions_dir, write_goemotions_slice

SEED = 16  # the number: the kill points are drawn from random.Random(SEED)
KILLS = 3
LABELS = "admiration,gratitude,anger,approval,curiosity"  # 11..21 positives each in the first 200 train rows
ARGS = ["--labels", LABELS, "--target-per-label", "30", "--no-progress"]
SHARD = 25  # texts per embedding-cache shard: 320 texts make 13 shards


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "EMO_HF_CACHE": str(cache), "EMO_HF_EMBED_SHARD_SIZE": str(SHARD), "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def _shards(cache: Path) -> int:
    return len(list(cache.glob("embeddings/*/*.npz")))


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.parent.glob(f".{out.name}.data-build-*") if (p / ".emo-hf-data-build.json").is_file()]


def _killed_build(source: Path, out: Path, cache: Path, point, delay: float) -> int:
    """Start `python -m emo_hf data build`, SIGKILL it `delay` seconds after `point()` first holds. -> return code
    (0 when the build finished first). The process is reaped, so its pid is gone for the next build."""
    process = subprocess.Popen([sys.executable, "-m", "emo_hf", "data", "build", "--source", str(source), "--out", str(out),
                                *ARGS], cwd=REPO, env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    while process.poll() is None and not point() and time.monotonic() - started < 300:
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    return process.wait(timeout=60)


RERUN_AND_REFERENCE = """
import json, sys
from emo_hf.cli import main
from emo_hf.data.builder import build_dataset
source, out, reference, reference_cache = sys.argv[1:5]
code = main(["data", "build", "--source", source, "--out", out, *json.loads(sys.argv[5])])
# the uninterrupted build, in the same kind of process, with an empty cache of its own
build_dataset(source, reference, labels=sys.argv[6], target_per_label=30, cache_dir=reference_cache, show_progress=False)
print(json.dumps({"code": code}))
"""


@pytest.mark.slow
def test_sigkilled_builds_rerun_to_the_rows_of_an_uninterrupted_build(tmp_path):
    if goemotions_dir() is None:
        pytest.skip(SKIP_REASON)
    source = write_goemotions_slice(tmp_path / "go", 200, 60, 60)
    out, cache = tmp_path / "data", tmp_path / "cache"
    rng = random.Random(SEED)
    codes, shards = [], []
    for kill in range(KILLS):
        before = _shards(cache)
        if kill < KILLS - 1:  # during embedding: after 1..4 new shards, at a random moment of the next chunk
            wanted = before + rng.randint(1, 4)
            point = lambda: _shards(cache) >= wanted  # noqa: E731
        else:  # while the finished files are written into the temporary folder
            point = lambda: bool(_temporaries(out))  # noqa: E731
        codes.append(_killed_build(source, out, cache, point, delay=rng.uniform(0.0, 0.05 if kill == KILLS - 1 else 0.5)))
        shards.append(_shards(cache))
    assert codes.count(-signal.SIGKILL) >= 2, f"return codes {codes}: the builds were not killed"
    assert 0 < shards[0] < shards[1], shards  # every killed run kept the shards it had finished
    stale = _temporaries(out)
    assert stale or codes[-1] == 0  # the last kill (if it landed) left its half-written folder

    done = subprocess.run([sys.executable, "-c", RERUN_AND_REFERENCE, str(source), str(out), str(tmp_path / "reference"),
                           str(tmp_path / "reference-cache"), json.dumps(ARGS), LABELS], cwd=REPO, env=_env(cache),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 0}, done.stderr[-3000:]
    plan = re.search(r"embeddings: (\d+) texts, (\d+) cached, (\d+) to embed", done.stderr)
    assert plan, done.stderr[-3000:]
    total, cached, to_embed = (int(plan.group(i)) for i in (1, 2, 3))
    assert total == 320 and cached >= min(SHARD * shards[-1], 300), plan.group(0)  # the kept shards were read back
    assert to_embed <= max(0, total - SHARD * shards[-1]), plan.group(0)  # and only the rest embedded
    assert not any(p.exists() for p in stale)

    mine = json.loads((out / "build_info.json").read_text())
    reference = json.loads((tmp_path / "reference" / "build_info.json").read_text())
    assert mine["rows"] == reference["rows"] and mine["rows"]["raw"] == {"train": 200, "validation": 60, "test": 60}
    assert mine["fingerprint"] == reference["fingerprint"]  # a hash of every parquet byte
    for config in ("raw", "balanced"):
        for split in ("train", "validation", "test"):
            name = mine["files"][config][split]
            assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name

    # nothing temporary left: next to OUT only what the test made, in the cache only finished shards
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data", "go", "reference", "reference-cache"]
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".tmp") or ".data-build-" in p.name]
    assert leftovers == [], leftovers
    print(f"return codes {codes}, shards after each kill {shards}, rerun: {plan.group(0)}")
