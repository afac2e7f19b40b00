"""Any tabular input read as pandas DataFrames of a bounded number of rows, in order: what `emo-hf predict` streams.

    from emo_hf.chunked_input import InputSource
    source = InputSource("posts.jsonl")                    # or .csv .tsv .parquet, a datasets folder, a Hub id
    for frame in source.chunks(4096): ...                  # DataFrames of <= 4096 rows
    source.fingerprint(), source.total_rows()

Why these readers: pandas `read_csv(chunksize=)` (every cell kept as the string it was written), pyarrow's
`ParquetFile.iter_batches`, `Dataset.iter` on a memory-mapped `datasets` table, and JSONL read line by line, so
memory stays flat on any length. (emo_hf.data.loading reads whole files into memory, for training data.)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
PARSE_ERROR = "__error__"  # column of a JSONL line that is not a JSON object (the row is kept, with this reason)


# ----------------------------------------------------------------------------------------------------------------------
class InputSource:
    """One input (file, `datasets` folder or Hub dataset), read as pandas DataFrames of at most `chunk_rows` rows."""

    def __init__(self, source: str | os.PathLike, *, split: str | None = None, config_name: str | None = None):
        self.source, self.split, self.config_name = str(source), split, config_name
        path = Path(self.source).expanduser()
        self.path = path
        if path.is_file():
            self.kind = FORMATS.get(path.suffix.lower())
            if self.kind is None:
                raise ValueError(f"{path}: unsupported input type {path.suffix!r}; use .csv, .tsv, .jsonl or "
                                 ".parquet (or a datasets folder / Hub dataset id with --split).")
        elif path.is_dir() or ("/" in self.source and not path.exists() and not self.source.startswith((".", "/"))):
            self.kind = "datasets"
        else:
            raise FileNotFoundError(f"{self.source} does not exist; pass a CSV, TSV, JSONL or parquet file, a "
                                    "datasets folder or a Hub dataset id.")
        self._dataset = None

    # -- datasets ------------------------------------------------------------------------------------------------------
    def dataset(self):
        """The `datasets.Dataset` of a folder (save_to_disk or load_dataset layout) or Hub id, memory-mapped."""
        if self._dataset is None:
            import datasets

            saved = self.path.is_dir() and any((self.path / name).is_file() for name in ("state.json",
                                                                                            "dataset_dict.json"))
            if saved:  # Dataset.save_to_disk / DatasetDict.save_to_disk layout
                loaded = datasets.load_from_disk(str(self.path))
            else:
                loaded = datasets.load_dataset(self.source, self.config_name, split=self.split)
            if isinstance(loaded, datasets.DatasetDict):
                if self.split is None or self.split not in loaded:
                    raise ValueError(f"{self.source} has splits {sorted(loaded)}: pick one with --split, e.g. "
                                     f"--split {sorted(loaded)[-1]}.")
                loaded = loaded[self.split]
            self._dataset = loaded
        return self._dataset

    def total_rows(self) -> int | None:
        """The number of rows when it is known without reading the data (parquet metadata, datasets), else None."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows
        if self.kind == "datasets":
            return self.dataset().num_rows
        return None

    def fingerprint(self) -> str:
        """Identifies the input's content for --resume: size + SHA-256 of its first and last MiB (a file), or the
        dataset's own fingerprint. Hashing a whole multi-GB file would cost more than a resume saves."""
        if self.kind == "datasets":
            return f"datasets:{self.dataset()._fingerprint}"
        size = self.path.stat().st_size
        digest = hashlib.sha256(str(size).encode())
        with open(self.path, "rb") as handle:
            digest.update(handle.read(1 << 20))
            if size > 2 << 20:
                handle.seek(size - (1 << 20))
                digest.update(handle.read())
        return f"file:{size}:{digest.hexdigest()}"

    def chunks(self, chunk_rows: int) -> Iterator["Any"]:
        """DataFrames of at most `chunk_rows` rows, in input order (the last may be shorter)."""
        import pandas as pd

        if self.kind in ("csv", "tsv"):
            try:
                # dtype=str + no NA parsing: every cell comes back exactly as written ("" stays "", "NA" stays "NA").
                reader = pd.read_csv(self.path, sep="\t" if self.kind == "tsv" else ",", dtype=str,
                                     keep_default_na=False, na_filter=False, chunksize=chunk_rows, encoding="utf-8")
                yield from reader
            except pd.errors.EmptyDataError:
                raise ValueError(f"{self.path} is empty; it needs a header line and rows.") from None
            except (pd.errors.ParserError, UnicodeDecodeError) as error:
                raise ValueError(f"{self.path}: cannot be read as {self.kind.upper()} ({error}); quote fields that "
                                 "contain the delimiter, and save it as UTF-8.") from None
        elif self.kind == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        elif self.kind == "jsonl":
            yield from self._jsonl_chunks(chunk_rows)
        else:
            for batch in self.dataset().iter(batch_size=chunk_rows):
                yield pd.DataFrame(batch)

    def _jsonl_chunks(self, chunk_rows: int) -> Iterator["Any"]:
        import pandas as pd

        records: list[dict] = []
        with open(self.path, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError(f"a JSON {type(record).__name__}, not an object")
                except ValueError as error:  # JSONDecodeError included: keep the row, say why (one bad line
                    # never loses the file)
                    record = {PARSE_ERROR: f"line {line_number} is not a JSON object ({error})"}
                records.append(record)
                if len(records) == chunk_rows:
                    yield pd.DataFrame.from_records(records)
                    records = []
        if records:
            yield pd.DataFrame.from_records(records)
