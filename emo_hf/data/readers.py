"""File readers that cannot silently merge or drop rows: GoEmotions TSV, the user's CSV / TSV, and JSON lines.

    >>> from emo_hf.data.readers import read_delimited, read_json_lines
    >>> records = read_delimited(Path("train.tsv"), delimiter="\\t", n_fields=3)   # [(line, [text, ids, id]), ...]
    >>> records = read_json_lines(Path("mine.jsonl"))                               # [(line, {...}), ...]

Why not plain `csv.reader` / `pandas.read_csv`: both follow quotes across lines, so one stray `"` at the start of a
field swallows the following lines (tabs and newlines included) into that field and the file reads "fine" with
fewer rows (the GoEmotions report of issue 16: 75 lines merged into one text, exit 0). The formats do use standard
CSV quoting (the official GoEmotions files quote texts that hold quotes, inner quotes doubled), so quotes are parsed,
and then every record is checked:
- a record must lie on one physical line: a field holding a line break is refused (it is what a stray quote makes;
  texts that really hold line breaks belong in JSONL or parquet, where a newline is written `\\n`);
- in a TSV, a field holding a tab is refused (the same stray quote, on one line);
- a bare carriage return (`\\r` not followed by `\\n`) is refused: csv ends a line there, so a text holding one that
  was written without quotes (csv.writer quotes only the characters of its own line terminator) is split in two;
- a malformed quote (`"ab"c`) is refused (`strict` parsing), as is a record with the wrong number of fields;
- the records read are counted against the file's non-blank physical lines, counted without the parser: a
  mismatch stops the read.
Every error names the file and the physical line where the bad record starts, and says how to fix it.
Bytes: UTF-8 with or without a byte-order mark, or UTF-16 with its BOM (Excel's "Unicode text"); anything else is an
error naming the line and byte offset.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from pathlib import Path

# The line breaks csv (through io.StringIO(newline="")) ends a record on; str.splitlines would also split on \x0b,
# \x1c, \u2028, ... which are ordinary characters inside a text.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BARE_CR = re.compile(r"\r(?!\n)")
_FIX_QUOTES = ('write a literal quote inside a quoted field as "" (e.g. "He said ""hi""") or remove the stray quote')


def decode(path: Path, data: bytes | None = None) -> str:
    """The file's text: UTF-8 (a BOM is dropped) or UTF-16 with a BOM; undecodable bytes are an error naming the
    file, line and byte offset."""
    data = path.read_bytes() if data is None else data
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, skip = "utf-16", 0
    else:
        encoding, skip = "utf-8", len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode(encoding)
    except UnicodeDecodeError as error:
        start = error.start + skip
        line = data[:start].decode(encoding, errors="replace").count("\n") + 1 if encoding == "utf-16" \
            else data[:start].count(b"\n") + 1
        raise ValueError(
            f"{path}: line {line} (byte offset {start}) is not valid {encoding.upper()} "
            f"({data[start:start + 4]!r}); re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in > out`."
        ) from None


def physical_lines(text: str) -> list[str]:
    """The file's lines as csv sees them (split on \\r\\n, \\r, \\n only); no trailing empty line."""
    lines = _LINE_BREAK.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_delimited(
    path: Path, delimiter: str, n_fields: int | None = None, header: bool = False, text: str | None = None
) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """-> (header or None, [(physical line number, fields), ...]) for a CSV / TSV file, blank lines skipped.

    `n_fields`: the exact number of fields per record (default: the header's). Raises ValueError naming the file and
    line for any record the module docstring describes as refused, and for a record count that differs from the
    count of non-blank physical lines.
    """
    text = decode(path) if text is None else text
    kind = "TSV" if delimiter == "\t" else "CSV"
    bare = _BARE_CR.search(text)
    if bare:  # csv would end a record there: a text holding \r written without quotes splits its row in two
        line = len(_LINE_BREAK.findall(text, 0, bare.start())) + 1
        raise ValueError(
            f"{path}: line {line} holds a bare carriage return (\\r without \\n), which ends a {kind} line: a text "
            f"holding \\r written without quotes splits its row in two. Remove the \\r (or quote the field); a file with "
            f"old Mac line endings: convert them to \\n."
        )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    names: list[str] | None = None
    previous = 0  # reader.line_num after the previous record: the next record starts on the line after it
    while True:
        start = previous + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise ValueError(f"{path}: line {start}: malformed {kind} quoting ({error}); {_FIX_QUOTES}.") from None
        end, previous = reader.line_num, reader.line_num
        if not fields:
            continue  # a blank line holds no record
        for position, field in enumerate(fields, start=1):
            broken = "a line break" if ("\n" in field or "\r" in field) else "a tab" if delimiter == "\t" and "\t" in field else None
            if broken:
                where = f"the record runs on to line {end}" if end > start else "inside quotes"
                raise ValueError(
                    f"{path}: line {start}: field {position} holds {broken} ({where}: {field[:60]!r}...), which is what "
                    f"a stray '\"' opening a quoted field does; {_FIX_QUOTES}. Texts that really hold line breaks or "
                    f"tabs: save the file as JSONL or parquet instead."
                )
        if header and names is None:
            names = fields
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{path}: line {start}: the header repeats column(s) {repeated}; give every column its own name.")
            n_fields = n_fields or len(names)
            continue
        if n_fields is not None and len(fields) != n_fields:
            what = f"the header has {n_fields} ({names})" if names is not None else f"expected {n_fields}"
            raise ValueError(
                f"{path}: line {start} has {len(fields)} field(s), {what}: {fields!r:.200}; quote fields that contain "
                f"the delimiter {delimiter!r}."
            )
        records.append((start, fields))
    counted = sum(1 for line in physical_lines(text) if line != "") - (1 if names is not None else 0)
    if counted != len(records):  # the backstop: the checks above should make this impossible
        raise ValueError(
            f"{path}: read {len(records)} record(s) from {counted} non-blank line(s); the file has quoting the reader "
            f"cannot map to lines. Check the quotes in the file ({_FIX_QUOTES})."
        )
    return names, records


def read_json_lines(path: Path, text: str | None = None) -> list[tuple[int, dict]]:
    """-> [(line number, record), ...] for a JSON-lines file (one JSON object per line, blank lines skipped).

    Lines are split on \\n only (JSON strings may hold U+2028 and other separators raw). An empty file, a line that
    is not valid JSON or not an object, and a record count that differs from the non-blank line count are errors
    naming the file and line.
    """
    text = decode(path) if text is None else text
    lines = text.split("\n")
    records: list[tuple[int, dict]] = []
    for number, line in enumerate(lines, start=1):
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number} is not valid JSON ({error.msg}): {line!r:.200}") from None
        if not isinstance(record, dict):
            raise ValueError(
                f"{path}: line {number} holds a JSON {type(record).__name__}, not an object; write one object per line, "
                f'e.g. {{"text": "I love it", "labels": ["joy"]}}.'
            )
        records.append((number, record))
    if not records:
        raise ValueError(f'{path} holds no JSON records; write one object per line, e.g. {{"text": "I love it", "labels": ["joy"]}}.')
    counted = sum(1 for line in lines if line.strip())
    if counted != len(records):
        raise ValueError(f"{path}: read {len(records)} record(s) from {counted} non-blank line(s).")
    return records


def read_table(path: Path):
    """CSV / TSV / JSONL / parquet -> (pandas DataFrame, physical line of each row or None for parquet, {column:
    lines of the JSONL records that lack it}). Errors name the file and line (see `readers`)."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a CSV, TSV, JSONL or parquet file.")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
        if frame.empty:
            raise ValueError(f"{path} has no rows; it needs a text column and labels.")
        return frame, None, {}
    if suffix in (".jsonl", ".json"):
        records = read_json_lines(path)
        columns = list(dict.fromkeys(key for _, record in records for key in record))
        missing = {c: [line for line, record in records if c not in record] for c in columns}
        frame = pd.DataFrame.from_records([record for _, record in records], columns=columns)
        return frame, [line for line, _ in records], {c: lines for c, lines in missing.items() if lines}
    if suffix in (".csv", ".tsv"):
        header, records = read_delimited(path, delimiter="\t" if suffix == ".tsv" else ",", header=True)
        if header is None:
            raise ValueError(f"{path} is empty; it needs a header line (e.g. text,labels) and rows.")
        if not records:
            raise ValueError(f"{path} has a header ({', '.join(header)}) but no rows.")
        return pd.DataFrame([fields for _, fields in records], columns=header), [line for line, _ in records], {}
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv, .jsonl or .parquet.")
