"""Predict a whole file of texts with a trained model, streamed in chunks: what `emo-hf predict` runs.

    from emo_hf.predict_files import predict_file
    summary = predict_file("runs/default/model", "tickets.csv", "tickets.pred.csv", text_column="body")
    # the rows of tickets.csv, in order, plus one probability column per label, `labels` and `error`

    emo-hf predict runs/default/model --input posts.jsonl --output posts.pred.parquet --resume
    torchrun --nproc_per_node 4 -m emo_hf predict runs/default/model --input big.parquet --output big.pred.parquet

How it works, and why:
- The input is read `chunk_rows` rows at a time (pandas `read_csv(chunksize=)` for CSV/TSV with every cell kept as
  the string it was, pyarrow's `ParquetFile.iter_batches` for parquet, line-chunked JSONL, `Dataset.iter` for a
  `datasets` folder or Hub dataset), so memory stays flat whatever the file's length.
- Chunk k goes to process k % world_size (torchrun / accelerate set WORLD_SIZE and RANK); inside a chunk the valid
  texts are sorted by length (less padding per batch) and the probabilities put back in input order.
- Every finished chunk is a parquet part file in `.OUTPUT.emo-hf-parts/` next to the output, written under a temporary
  name and renamed, with a manifest of the input's fingerprint and the settings. `resume=True` skips the chunks whose
  part exists (same fingerprint and settings, any number of processes); at the end process 0 concatenates the parts in
  chunk order into a temporary file next to the output, moves it into place and removes the parts folder. So the
  output is identical for 1 or N processes, and an interrupted run never leaves a half-written output.
- A row whose text is missing, empty or not a string (or a JSONL line that is not a JSON object) is kept, with empty
  probabilities and `labels`, its reason in the `error` column, and counted in the summary.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .chunked_input import FORMATS, PARSE_ERROR, InputSource

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 4096  # rows per chunk: the length-sort window and the unit of --resume
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class PredictSummary:
    """What a `predict_file` run did (the numbers `emo-hf predict` prints)."""

    output: str
    rows: int
    errors: int
    predicted: int  # texts predicted by this run (resumed chunks and other processes' chunks excluded)
    chunks: int
    resumed_chunks: int
    seconds: float
    world_size: int

    @property
    def texts_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------------------------------------------------------
# Predicting one chunk
# ----------------------------------------------------------------------------------------------------------------------
def text_problem(value: Any) -> str | None:
    """Why `value` cannot be predicted (None when it can): the same rule as EmoModelForMultiLabel.check_texts."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing text"
    if not isinstance(value, str):
        return f"text is not a string ({type(value).__name__} {str(value)[:40]!r})"
    if not value.strip():
        return "empty text"
    return None


def predict_frame(model: Any, frame: Any, *, text_column: str, thresholds: np.ndarray, batch_size: int,
                  prefix: str = "") -> Any:
    """`frame` with one probability column per label, `labels` and `error` added (names prefixed with `prefix`).

    The valid texts are sorted by length before `model.predict_proba` (less padding in each batch; the window is this
    chunk, so memory stays bounded) and the probabilities are put back in the rows' order.
    """
    labels = list(model.config.labels)
    n = len(frame)
    errors: list[str | None] = [None] * n
    parse_errors = frame.pop(PARSE_ERROR).tolist() if PARSE_ERROR in frame.columns else [None] * n
    values = frame[text_column].tolist() if text_column in frame.columns else [None] * n
    for i, (value, parse_error) in enumerate(zip(values, parse_errors)):
        errors[i] = parse_error if isinstance(parse_error, str) else text_problem(value)
    valid = [i for i in range(n) if errors[i] is None]
    probabilities = np.full((n, len(labels)), np.nan, dtype=np.float64)
    if valid:
        order = sorted(valid, key=lambda i: len(values[i]))
        predicted = np.asarray(model.predict_proba([values[i] for i in order], batch_size=batch_size))
        probabilities[order] = predicted
    out = frame.copy()
    for j, name in enumerate(labels):
        out[prefix + name] = probabilities[:, j]
    out[prefix + "labels"] = [None if errors[i] is not None else
                              [labels[j] for j in np.flatnonzero(probabilities[i] >= thresholds)] for i in range(n)]
    out[prefix + "error"] = errors
    return out


def _arrow_table(frame: Any):
    """A pyarrow Table of `frame`; object columns holding several Python types (JSONL) become strings (JSON for
    non-strings) rather than failing, since a parquet column has one type."""
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        frame = frame.copy()
        for column in frame.columns:
            try:
                pa.array(frame[column], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                frame[column] = [v if v is None or isinstance(v, str) else json.dumps(v, default=str)
                                 for v in frame[column].tolist()]
        return pa.Table.from_pandas(frame, preserve_index=False)


# ----------------------------------------------------------------------------------------------------------------------
# Processes (torchrun / accelerate launch)
# ----------------------------------------------------------------------------------------------------------------------
def process_group() -> tuple[int, int, Any]:
    """(rank, world_size, barrier): from torchrun/accelerate's environment; a gloo group only for the barriers
    (the chunks are independent: no tensors are exchanged, so gloo works next to GPUs too)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, lambda: None
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        # Long timeout: process 0 waits at the last barrier for the slowest process's final chunk.
        dist.init_process_group("gloo", timeout=timedelta(hours=12))
    return dist.get_rank(), dist.get_world_size(), dist.barrier


def load_predictor(model_dir: str | os.PathLike, onnx: bool = False) -> Any:
    """A trained emo_hf model folder (PyTorch, on this process's GPU when there is one) or an ONNX export
    (`onnx=True`, or a folder holding model.onnx only): an object with `predict_proba` and `config`."""
    folder = Path(model_dir)
    if onnx or ((folder / "model.onnx").is_file() and not (folder / "head.safetensors").is_file()):
        from .onnx_export import OnnxEmoClassifier

        return OnnxEmoClassifier(folder)
    import torch

    if torch.cuda.is_available():  # each process its own GPU (4-bit models are placed on the current device)
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    from .pipeline import load_trained_model

    return load_trained_model(folder)


def _model_fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "thresholds.json"):
        if (model_dir / name).is_file():
            digest.update((model_dir / name).read_bytes())
    for name in ("head.safetensors", "model.onnx", "backbone.safetensors", "adapter/adapter_model.safetensors"):
        if (model_dir / name).is_file():
            digest.update(f"{name}:{(model_dir / name).stat().st_size}".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------------
def predict_file(model: str | os.PathLike | Any, input: str | os.PathLike, output: str | os.PathLike, *,
                 text_column: str = "text", batch_size: int = 32, threshold_shift: float = 0.0, resume: bool = False,
                 onnx: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS, split: str | None = None,
                 config_name: str | None = None, column_prefix: str = "", overwrite: bool = False,
                 show_progress: bool = True) -> PredictSummary:
    """Predict every row of `input` into `output` (format from its suffix: .csv .tsv .jsonl .parquet).

    `model` is a model folder (or ONNX export folder) or an already loaded model (then `resume` compares its labels
    and thresholds only). See the module docstring for chunking, resuming and processes.
    """
    output = Path(output).expanduser()
    out_format = FORMATS.get(output.suffix.lower())
    if out_format is None:
        raise ValueError(f"--output {output}: unsupported type {output.suffix!r}; end it in .csv, .tsv, .jsonl or "
                         ".parquet.")
    if batch_size < 1 or chunk_rows < 1:
        raise ValueError(f"batch_size ({batch_size}) and chunk_rows ({chunk_rows}) must be >= 1, e.g. --batch-size 32.")
    source = InputSource(input, split=split, config_name=config_name)
    if source.kind != "datasets" and output.resolve() == source.path.resolve():
        raise ValueError(f"--output {output} is the input file; write the predictions to another file.")
    if output.exists() and not overwrite:
        raise ValueError(f"--output {output} exists; pick another file or pass --overwrite to replace it.")
    parts = output.parent / f".{output.name}.emo-hf-parts"
    rank, world, barrier = process_group()

    predictor = load_predictor(model, onnx) if isinstance(model, (str, os.PathLike)) else model
    labels = list(predictor.config.labels)
    thresholds = np.clip(np.asarray(predictor.config.thresholds, dtype=np.float64) + threshold_shift, 0.0, 1.0)
    manifest = {
        "version": MANIFEST_VERSION, "input": str(Path(str(input)).expanduser().resolve()) if source.kind != "datasets"
        else source.source, "input_fingerprint": source.fingerprint(), "split": split, "config_name": config_name,
        "model": _model_fingerprint(Path(model)) if isinstance(model, (str, os.PathLike)) else None,
        "labels": labels, "thresholds": thresholds.tolist(), "text_column": text_column, "chunk_rows": chunk_rows,
        "column_prefix": column_prefix, "output_format": out_format, "onnx": bool(onnx),
    }
    chunks = source.chunks(chunk_rows)
    first = next(chunks, None)  # checked before anything is written: a wrong column leaves no parts folder
    if first is None:
        raise ValueError(f"{source.source} has no rows to predict.")
    _check_columns(first, text_column, labels, column_prefix, source)
    keep = _check_parts(parts, manifest, resume=resume)  # every process decides the same, from the same files
    barrier()  # ... before process 0 changes them
    if rank == 0:
        _prepare_parts(parts, manifest, keep=keep)
    barrier()

    start = time.perf_counter()
    done = resumed = predicted = 0
    total = source.total_rows()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="row", desc="emo-hf predict", disable=not show_progress or rank != 0,
               dynamic_ncols=True)
    n_chunks = 0
    for index, frame in enumerate(itertools.chain([first], chunks)):
        n_chunks = index + 1
        if index % world == rank:
            part = parts / f"chunk-{index:07d}.parquet"
            if part.is_file():
                resumed += 1
            else:
                result = predict_frame(predictor, frame, text_column=text_column, thresholds=thresholds,
                                       batch_size=batch_size, prefix=column_prefix)
                _write_part(_arrow_table(result), part)
                predicted += int(result[column_prefix + "error"].isna().sum())
                done += 1
        bar.update(len(frame))
        elapsed = time.perf_counter() - start
        bar.set_postfix_str(f"{predicted / elapsed if elapsed > 0 else 0:.1f} texts/s")
    bar.close()
    barrier()  # every process's parts are written
    errors = rows = 0
    if rank == 0:
        rows, errors = _merge_parts(parts, n_chunks, output, out_format, column_prefix)
        shutil.rmtree(parts)
    barrier()
    seconds = time.perf_counter() - start
    return PredictSummary(output=str(output), rows=rows, errors=errors, predicted=predicted, chunks=n_chunks,
                          resumed_chunks=resumed, seconds=seconds, world_size=world)


def _check_columns(frame: Any, text_column: str, labels: list[str], prefix: str, source: InputSource) -> None:
    columns = [c for c in frame.columns if c != PARSE_ERROR]
    if text_column not in columns and PARSE_ERROR not in frame.columns:
        raise ValueError(f"{source.source} has no text column {text_column!r}; its columns are {columns}. Pass "
                         f"--text-column {columns[0] if columns else 'NAME'}.")
    clashes = [c for c in (*labels, "labels", "error") if prefix + c in columns]
    if clashes:
        raise ValueError(f"{source.source} already has column(s) {[prefix + c for c in clashes]}, which the "
                         f"predictions would overwrite; pass --column-prefix pred_ (or rename those columns).")


def _check_parts(parts: Path, manifest: dict, *, resume: bool) -> bool:
    """Whether the parts folder of an interrupted run is to be kept (--resume, same input and settings); raises
    when it cannot be used. Reads only: every process runs it."""
    if not parts.is_dir():
        if resume:
            logger.info("--resume: no interrupted run at %s; starting from the first row.", parts)
        return False
    try:
        previous = json.loads((parts / MANIFEST).read_text())
    except (OSError, ValueError):
        raise ValueError(f"{parts} exists but has no readable {MANIFEST}: it is not an emo-hf predict run's parts "
                         "folder. Move it away, or pick another --output.") from None
    if not resume:
        return False
    changed = sorted(k for k in set(previous) | set(manifest) if previous.get(k) != manifest.get(k))
    if changed:
        raise ValueError(f"--resume: the interrupted run in {parts} used different {changed} (input, model or "
                         "settings changed); rerun without --resume to start over.")
    return True


def _prepare_parts(parts: Path, manifest: dict, *, keep: bool) -> None:
    """Process 0: keep the interrupted run's parts, or start a fresh parts folder (an earlier run's, identified by
    its manifest, is replaced: this tool wrote it)."""
    if keep:
        done = len(list(parts.glob("chunk-*.parquet")))
        logger.info("--resume: %d finished chunk(s) of %d rows found in %s.", done, manifest["chunk_rows"], parts)
        return
    if parts.is_dir():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    (parts / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _write_part(table: Any, part: Path) -> None:
    import pyarrow.parquet as pq

    temporary = part.with_name(f".{part.name}.{os.getpid()}.tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, part)  # a part exists only when complete: what --resume relies on


def _merge_parts(parts: Path, n_chunks: int, output: Path, out_format: str, prefix: str) -> tuple[int, int]:
    """Concatenate the parts in chunk order into a temporary file next to `output`, then move it into place.
    Returns (rows, rows with an error)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [parts / f"chunk-{i:07d}.parquet" for i in range(n_chunks)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise RuntimeError(f"{len(missing)} chunk(s) were not written (e.g. {missing[0]} in {parts}): a process "
                           "stopped early. Run again with --resume to finish them.")
    schemas = [pq.read_schema(f) for f in files]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    schema = schema.remove_metadata()
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(handle)
    rows = errors = 0
    try:
        writer = pq.ParquetWriter(temporary, schema) if out_format == "parquet" else None
        text_out = None if writer is not None else open(temporary, "w", encoding="utf-8", newline="")
        try:
            for i, file in enumerate(files):
                table = pq.read_table(file)
                table = pa.table({name: table.column(name) if name in table.column_names
                                  else pa.nulls(table.num_rows, schema.field(name).type)
                                  for name in schema.names}).cast(schema)
                rows += table.num_rows
                errors += table.num_rows - table.column(prefix + "error").null_count
                if writer is not None:
                    writer.write_table(table)
                    continue
                frame = table.to_pandas()
                if out_format == "jsonl":
                    lines = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=15)
                    text_out.write(lines if lines.endswith("\n") else lines + "\n")
                else:  # CSV / TSV: the label list as "joy,anger" (what `emo-hf data build` reads back)
                    frame[prefix + "labels"] = [None if v is None else ",".join(v)
                                                for v in frame[prefix + "labels"].tolist()]
                    frame.to_csv(text_out, sep="\t" if out_format == "tsv" else ",", index=False, header=i == 0)
        finally:
            if writer is not None:
                writer.close()
            if text_out is not None:
                text_out.close()
        os.replace(temporary, output)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return rows, errors


def summary_line(summary: PredictSummary) -> str:
    """The one-line summary `emo-hf predict` prints."""
    text = (f"Wrote {summary.rows} rows to {summary.output}: {summary.errors} with an error (missing, empty or "
            f"non-string text; see the error column). {summary.predicted} texts predicted in {summary.seconds:.1f} s "
            f"({summary.texts_per_second:.1f} texts/s)")
    if summary.resumed_chunks:
        text += f"; {summary.resumed_chunks} chunk(s) resumed from the interrupted run"
    if summary.world_size > 1:
        text += f"; {summary.world_size} processes ({summary.predicted} by process 0)"
    return text + "."


__all__ = ["DEFAULT_CHUNK_ROWS", "PredictSummary", "load_predictor", "predict_file", "predict_frame",
           "summary_line", "text_problem"]
