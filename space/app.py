"""emo_hf Space: type a text, see the probability of every emotion and which ones the model detects.

Run it locally (the folder is what the README's main job `emo-hf run --out runs/default` exports):

    EMO_HF_MODEL=runs/default/model python space/app.py        # a local model folder
    EMO_HF_MODEL=your-name/emo-hf-model python space/app.py    # or a Hub repo id
    python space/app.py                                         # default: runs/default/model of this repository

then open http://127.0.0.1:7860. On a Hugging Face Space set the `EMO_HF_MODEL` variable in the Space settings.

The model is loaded with `AutoModel.from_pretrained`. When the `emo_hf` package is installed it registers the model
classes itself; otherwise (a Space, which installs only space/requirements.txt) the model's own code saved next to its
weights is used through `trust_remote_code=True`, so the Space needs no `emo_hf` install.

Everything the UI does lives in plain functions, testable without a server:

    from app import build_demo, load_model, predict_text, predict_csv
    model = load_model("runs/default/model")
    result = predict_text(model, "I love it!", threshold_shift=0.0)  # -> TextPrediction
    demo = build_demo(model, source="runs/default/model")            # -> gr.Blocks
    serve(demo, server_port=7860)                                    # queue + limits + launch
"""

from __future__ import annotations

import copy
import html
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
# What `emo-hf run --out runs/default` exports (see the repository README).
DEFAULT_MODEL = REPO_ROOT / "runs" / "default" / "model"
REPORT_NAME = "report.json"

# Limits, each overridable through the environment of the Space.
MAX_CHARS = int(os.environ.get("EMO_HF_SPACE_MAX_CHARS", "20000"))  # characters read from one text box
MAX_ROWS = int(os.environ.get("EMO_HF_SPACE_MAX_ROWS", "1000"))  # rows of one batch CSV
MAX_FILE_MB = float(os.environ.get("EMO_HF_SPACE_MAX_FILE_MB", "2"))  # size of one batch CSV
# Events run at once. Two CPU cores gain nothing from more; torch already uses every core inside one forward pass.
CONCURRENCY = int(os.environ.get("EMO_HF_SPACE_CONCURRENCY", "2"))
QUEUE_SIZE = int(os.environ.get("EMO_HF_SPACE_QUEUE_SIZE", "64"))
BATCH_SIZE = 32

DETECTED, BELOW = "detected", "below threshold"

EXAMPLES: list[tuple[str, str]] = [
    ("Support ticket",
     "Ticket #48213: I have been charged twice for my subscription this month and nobody has answered my last three "
     "emails. This is really frustrating. Please refund the duplicate payment today."),
    ("Social post",
     "Just got the acceptance letter!!! Four years of hard work and I'm finally going to grad school. "
     "Thank you to everyone who believed in me, I can't stop smiling"),
    ("Email",
     "Hi Sam,\n\nI'm sorry to hear about your father's passing. He was always so kind to me, and I know how much he "
     "meant to you. Let me know if there is anything I can do.\n\nWarm regards,\nAlex"),
]


# ----------------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------------
def model_source(env: dict[str, str] | None = None) -> str:
    """The model to show: `EMO_HF_MODEL` (Hub repo id or folder) or else the repository's `runs/default/model`."""
    env = os.environ if env is None else env
    source = env.get("EMO_HF_MODEL", "").strip()
    if not source:
        return str(DEFAULT_MODEL)
    # A relative folder such as runs/default/model also works when started from another directory.
    if not Path(source).expanduser().exists() and (REPO_ROOT / source).is_dir():
        return str(REPO_ROOT / source)
    return source


def missing_model_message(source: str) -> str | None:
    """A Markdown explanation when `source` is the default folder and it does not exist yet, else None."""
    if Path(source).expanduser().exists() or source != str(DEFAULT_MODEL):
        return None
    return (
        f"**No model to show yet.** `EMO_HF_MODEL` is not set and the default folder `{source}` does not exist.\n\n"
        "Make it with the main job of the README (from the repository root):\n\n"
        "```bash\nemo-hf run --out runs/default\npython space/app.py\n```\n\n"
        "or point the app at a trained model, a local folder or a Hub repo id:\n\n"
        "```bash\nEMO_HF_MODEL=runs/default/model python space/app.py\n"
        "EMO_HF_MODEL=your-name/emo-hf-model python space/app.py\n```\n\n"
        "On a Hugging Face Space, set the variable `EMO_HF_MODEL` to the model's repo id under "
        "*Settings → Variables and secrets* and restart the Space."
    )


def load_model(source: str) -> Any:
    """`AutoModel.from_pretrained(source)` in eval mode: an `EmoModelForMultiLabel` from a folder or Hub repo id.

    With `emo_hf` installed its registered classes are used; without it, the model's saved code
    (`trust_remote_code=True`), which is what happens on a Space.
    """
    from transformers import AutoModel

    try:
        import emo_hf.modeling  # noqa: F401  (registers EmoConfig / EmoModelForMultiLabel with the Auto classes)

        remote_code = False
    except ImportError:
        remote_code = True
    path = Path(source).expanduser()
    model = AutoModel.from_pretrained(str(path) if path.exists() else source, trust_remote_code=remote_code)
    model.eval()
    return model


def load_report(source: str) -> dict[str, Any] | None:
    """The model's `report.json` (test metrics) from its folder or Hub repo, or None when it has none."""
    path = Path(source).expanduser()
    try:
        if path.is_dir():
            file = path / REPORT_NAME
            return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(source, REPORT_NAME)).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001  (no report, no network, bad JSON: the panel just shows no metrics)
        return None


# ----------------------------------------------------------------------------------------------------------------------
# Model facts
# ----------------------------------------------------------------------------------------------------------------------
def model_labels(model: Any) -> list[str]:
    """Label names in the model's logit order."""
    id2label = model.config.id2label
    return [id2label[i] for i in range(len(id2label))]


def model_thresholds(model: Any) -> dict[str, float]:
    """`{label: tuned threshold}` from the model's config (0.5 where it has none)."""
    labels = model_labels(model)
    thresholds = getattr(model.config, "thresholds", None) or [0.5] * len(labels)
    if isinstance(thresholds, dict):
        return {name: float(thresholds.get(name, 0.5)) for name in labels}
    return {name: float(t) for name, t in zip(labels, thresholds)}


def base_model_name(model: Any) -> str:
    config = model.config
    for key in ("backbone", "backbone_name_or_path"):
        value = getattr(config, key, None)
        if isinstance(value, str) and value:
            return value
    return "unknown"


class TokenCounter:
    """Counts a text's tokens the way the model does, to tell the user when the model reads only part of it.

    Text mode: the model's tokenizer and `config.max_length`; embedding mode: the sentence encoder's tokenizer and
    its `max_seq_length`. It keeps its own copy of the tokenizer: a fast tokenizer called from two threads with
    different truncation settings raises "Already borrowed".
    """

    def __init__(self, model: Any):
        self.max_length, tokenizer = 0, None
        try:
            if getattr(model.config, "input_mode", "text") == "embedding":
                encoder = model.sentence_encoder()
                tokenizer, self.max_length = encoder.tokenizer, int(encoder.max_seq_length)
            else:
                tokenizer, self.max_length = getattr(model, "tokenizer", None), int(model.config.max_length)
        except Exception:  # noqa: BLE001  (no tokenizer: the app works, only without the truncation notice)
            tokenizer = None
        self.tokenizer = copy.deepcopy(tokenizer) if tokenizer is not None else None
        self._lock = threading.Lock()

    def count(self, text: str) -> tuple[int, int | None]:
        """`(number of tokens, character offset where the model stops reading, or None when it reads it all)`."""
        if self.tokenizer is None or self.max_length <= 0:
            return 0, None
        with self._lock:
            n_tokens = len(self.tokenizer(text)["input_ids"])
            if n_tokens <= self.max_length:
                return n_tokens, None
            try:  # the same right-side truncation the model applies; special tokens have offsets (0, 0)
                kept = self.tokenizer(text, truncation=True, max_length=self.max_length,
                                      return_offsets_mapping=True)["offset_mapping"]
                return n_tokens, max(end for _, end in kept)
            except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
                return n_tokens, -1


class SerializedModel:
    """The model with `predict` running one call at a time (everything else passes through).

    Gradio runs events in worker threads, and a fast (Rust) tokenizer shared between threads that reset its
    truncation settings on every call can raise "RuntimeError: Already borrowed" (huggingface/tokenizers#537,
    huggingface/transformers#47085); `EmoModelForMultiLabel.tokenize` calls it with `truncation=False` then
    `truncation=True`. On a CPU Space one forward pass already uses every core, so serializing costs little, and
    the batch tab calls `predict` per chunk so single texts still get a turn between chunks.
    """

    def __init__(self, model: Any):
        self.model = model
        self._lock = threading.Lock()

    def predict(self, texts: list[str], **kwargs: Any) -> list[dict]:
        with self._lock:
            return self.model.predict(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


# ----------------------------------------------------------------------------------------------------------------------
# One text
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class TextPrediction:
    """Everything the "Text" tab shows for one text."""

    probabilities: dict[str, float] = field(default_factory=dict)  # every label, in label order
    detected: list[str] = field(default_factory=list)  # labels at/above their shifted threshold, most probable first
    thresholds: dict[str, float] = field(default_factory=dict)  # shifted thresholds actually applied
    notice: str = ""  # Markdown: empty input, truncation

    def label_value(self) -> dict[str, float] | None:
        """Value for `gr.Label`: `{label: probability}` (None when there is nothing to show)."""
        return dict(self.probabilities) or None

    def bar_frame(self) -> pd.DataFrame:
        """Value for `gr.BarPlot`: one row per label (emotion, probability, threshold, status)."""
        rows = [
            {"emotion": name, "probability": p, "threshold": self.thresholds[name],
             "status": DETECTED if name in self.detected else BELOW}
            for name, p in self.probabilities.items()
        ]
        return pd.DataFrame(rows, columns=["emotion", "probability", "threshold", "status"])

    def detected_html(self) -> str:
        """The detected emotions as coloured chips with probability and threshold."""
        if not self.probabilities:
            return "<p class='emo-none'>Type a text and press <b>Detect emotions</b>.</p>"
        if not self.detected:
            top = max(self.probabilities, key=self.probabilities.get)
            return (
                "<p class='emo-none'>No emotion reached its threshold. Highest: "
                f"<b>{html.escape(top)}</b> {self.probabilities[top]:.2f} (threshold {self.thresholds[top]:.2f}).</p>"
            )
        chips = "".join(
            f"<span class='emo-chip' data-label='{html.escape(name)}' style='display:inline-block;margin:3px;"
            "padding:4px 12px;border-radius:999px;background:#e4572e;color:white;font-weight:600'>"
            f"{html.escape(name)} {self.probabilities[name]:.2f}"
            f"<span style='font-weight:400;opacity:.85'> &ge; {self.thresholds[name]:.2f}</span></span>"
            for name in self.detected
        )
        return f"<div class='emo-detected'><b>Detected:</b> {chips}</div>"


def shifted_thresholds(model: Any, threshold_shift: float) -> dict[str, float]:
    """Each label's tuned threshold plus `threshold_shift`, kept inside [0, 1]."""
    return {name: min(1.0, max(0.0, t + threshold_shift)) for name, t in model_thresholds(model).items()}


def predict_text(model: Any, text: str | None, threshold_shift: float = 0.0,
                 counter: TokenCounter | None = None) -> TextPrediction:
    """Probabilities and detected labels of one text, with a notice for empty or truncated input.

        >>> result = predict_text(model, "Thank you so much, this made my day!")
        >>> result.probabilities["gratitude"], result.detected
    """
    text = (text or "").strip()
    thresholds = shifted_thresholds(model, threshold_shift)
    if not text:
        return TextPrediction(thresholds=thresholds,
                              notice="**Nothing to read yet:** type or paste a text (or pick an example) first.")
    notices = []
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        notices.append(f"**Truncated:** the text is longer than {MAX_CHARS:,} characters; only the first {MAX_CHARS:,} were sent.")
    if counter is not None:
        n_tokens, stop = counter.count(text)
        if stop is not None:
            where = (f", so it stopped after “…{text[max(0, stop - 40):stop]}” (character {stop:,} of {len(text):,})"
                     if stop >= 0 else "")
            notices.append(f"**Truncated:** the text has {n_tokens:,} tokens and the model reads the first "
                           f"{counter.max_length:,}{where}. The rest did not count.")
    result = model.predict([text], threshold_shift=threshold_shift)[0]
    probabilities = {name: float(result["probabilities"][name]) for name in model_labels(model)}
    detected = sorted(result["labels"], key=lambda name: -probabilities[name])
    return TextPrediction(probabilities, detected, thresholds, "\n\n".join(notices))


# ----------------------------------------------------------------------------------------------------------------------
# A CSV of texts
# ----------------------------------------------------------------------------------------------------------------------
def probability_column(label: str) -> str:
    return f"prob_{label}"


def read_csv_upload(path: str | os.PathLike, max_rows: int = MAX_ROWS, max_mb: float = MAX_FILE_MB) -> pd.DataFrame:
    """The uploaded CSV as strings, after checking its size and row count (ValueError with the fix otherwise)."""
    path = Path(path)
    size_mb = path.stat().st_size / 1e6
    if size_mb > max_mb:
        raise ValueError(f"The file {path.name} is {size_mb:.1f} MB; the limit here is {max_mb:g} MB. "
                         "Split it into smaller CSV files, or predict large files (CSV, JSONL, parquet, any size) "
                         "with the command line: `emo-hf predict MODEL --input FILE --output FILE`.")
    try:
        # One row more than allowed tells "too many" without parsing a huge file.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=max_rows + 1, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text. Save it as 'CSV UTF-8' and upload it again.") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path.name} is empty. Upload a CSV with a header row and a 'text' column.") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path.name} is not a valid CSV ({error}). Upload a comma-separated file with a "
                         "header row.") from None
    if len(frame) > max_rows:
        raise ValueError(f"{path.name} has more than {max_rows:,} rows; the limit here is {max_rows:,}. "
                         "Split it into smaller files, or predict large files (CSV, JSONL, parquet, any size) "
                         "with the command line: `emo-hf predict MODEL --input FILE --output FILE`.")
    if frame.empty:
        raise ValueError(f"{path.name} has a header but no rows. Add one text per row.")
    return frame


def text_columns(path: str | os.PathLike | None) -> list[str]:
    """The column names of a CSV (header only), or [] when it cannot be read."""
    if not path:
        return []
    try:
        return list(pd.read_csv(path, dtype=str, nrows=0, encoding="utf-8-sig").columns)
    except Exception:  # noqa: BLE001  (the batch run reports the real error with its fix)
        return []


def predict_frame(model: Any, frame: pd.DataFrame, column: str, threshold_shift: float = 0.0,
                  batch_size: int = BATCH_SIZE, progress: Any = None) -> pd.DataFrame:
    """`frame` plus one `prob_<label>` column per label and `detected_labels` (';'-separated) for `frame[column]`.

    Empty texts get empty probabilities and no labels.
    """
    if column not in frame.columns:
        raise ValueError(f"The CSV has no column {column!r}; its columns are {list(frame.columns)}. "
                         "Pick the column that holds the texts.")
    labels = model_labels(model)
    texts = frame[column].fillna("").astype(str).str.strip().str.slice(0, MAX_CHARS).tolist()
    rows = [i for i, text in enumerate(texts) if text]
    if not rows:
        raise ValueError(f"Every row of column {column!r} is empty. Pick the column that holds the texts.")
    probabilities: list[list[float] | None] = [None] * len(texts)
    detected: list[str] = [""] * len(texts)
    for start in range(0, len(rows), batch_size):
        if progress is not None:
            progress(start / len(rows), desc=f"{start}/{len(rows)} texts")
        chunk = rows[start:start + batch_size]
        results = model.predict([texts[i] for i in chunk], batch_size=batch_size, threshold_shift=threshold_shift)
        for i, result in zip(chunk, results):
            probabilities[i] = [float(result["probabilities"][name]) for name in labels]
            detected[i] = ";".join(sorted(result["labels"], key=lambda name: -result["probabilities"][name]))
    out = frame.copy()
    for j, name in enumerate(labels):
        out[probability_column(name)] = [None if p is None else round(p[j], 6) for p in probabilities]
    out["detected_labels"] = detected
    return out


def predict_csv(model: Any, path: str | os.PathLike, column: str = "text", threshold_shift: float = 0.0,
                out_dir: str | os.PathLike | None = None, progress: Any = None) -> tuple[str, pd.DataFrame]:
    """Predict every row of the CSV at `path`; returns `(path of the result CSV, result frame)`.

        >>> out_path, frame = predict_csv(model, "tickets.csv", column="text")
    """
    frame = predict_frame(model, read_csv_upload(path), column, threshold_shift, progress=progress)
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="emo_hf_space_"))
    out_path = out_dir / f"{Path(path).stem}_emotions.csv"
    tmp_path = out_path.with_suffix(".csv.tmp")
    frame.to_csv(tmp_path, index=False)
    os.replace(tmp_path, out_path)  # never a half-written CSV for the download button
    return str(out_path), frame


# ----------------------------------------------------------------------------------------------------------------------
# Model-info panel
# ----------------------------------------------------------------------------------------------------------------------
def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def model_info_markdown(model: Any, source: str, report: dict[str, Any] | None) -> str:
    """Markdown: where the model comes from, base model, labels with thresholds, test metrics from report.json."""
    thresholds = model_thresholds(model)
    max_length = getattr(model.config, "max_length", None)
    lines = [
        f"**Model shown:** `{source}`  ",
        f"**Base model:** `{base_model_name(model)}`  ",
        f"**Labels:** {len(thresholds)}  ",
        f"**Max length:** {max_length} tokens (longer texts are truncated)" if max_length else "",
        "",
    ]
    per_label = {row.get("label"): row for row in (report or {}).get("per_label", []) if isinstance(row, dict)}
    if report:
        split = report.get("split", "test")
        tuned, at_half = report.get("metrics_tuned", {}) or {}, report.get("metrics_at_0.5", {}) or {}
        lines += [f"### Metrics on the {split} split", "", "| metric | tuned thresholds | all thresholds 0.5 |",
                  "|---|---|---|"]
        for key in [k for k in ("subset_accuracy", "micro_f1", "macro_f1") if k in tuned or k in at_half] + [
                k for k in tuned if k not in ("subset_accuracy", "micro_f1", "macro_f1")
                and isinstance(tuned[k], (int, float))]:
            lines.append(f"| {key} | {_number(tuned.get(key))} | {_number(at_half.get(key))} |")
        lines.append("")
    else:
        lines += ["*No report.json next to this model: no test metrics to show.*", ""]
    lines += ["### Labels and tuned thresholds", ""]
    if per_label:
        lines += ["| label | threshold | precision | recall | F1 | support |", "|---|---|---|---|---|---|"]
        for name, t in thresholds.items():
            row = per_label.get(name, {})
            lines.append(f"| {name} | {t:.2f} | {_number(row.get('precision'))} | {_number(row.get('recall'))} | "
                         f"{_number(row.get('f1'))} | {row.get('support', '–')} |")
    else:
        lines += ["| label | threshold |", "|---|---|"] + [f"| {name} | {t:.2f} |" for name, t in thresholds.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------------------------------
def build_demo(model: Any, source: str = "model", report: dict[str, Any] | None = None) -> gr.Blocks:
    """The Space's UI around a loaded model (not launched; see `serve`).

    API endpoints (for `gradio_client`): `/predict` (text, threshold_shift) -> (label, bars, detected HTML, notice)
    and `/predict_csv` (file, column, threshold_shift) -> (result CSV, preview, message).
    """
    labels = model_labels(model)
    counter = TokenCounter(model)
    model = model if isinstance(model, SerializedModel) else SerializedModel(model)

    def on_predict(text: str, shift: float):
        result = predict_text(model, text, shift, counter)
        return result.label_value(), result.bar_frame(), result.detected_html(), result.notice

    def on_upload(file: str | None):
        columns = text_columns(file)
        default = "text" if "text" in columns or not columns else columns[0]
        return gr.Dropdown(choices=columns or ["text"], value=default)

    def on_batch(file: str | None, column: str, shift: float, progress=gr.Progress()):
        if not file:
            raise gr.Error("Upload a CSV file first (one text per row, with a header row).")
        try:
            out_path, frame = predict_csv(model, file, column or "text", shift, progress=progress)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        n_detected = int((frame["detected_labels"] != "").sum())
        message = (f"Done: {len(frame):,} rows done, {n_detected:,} with at least one detected emotion. "
                   "Download the CSV below: one `prob_<label>` column per label and `detected_labels`.")
        return out_path, frame.head(20), message

    with gr.Blocks(title="emo_hf: emotion detection") as demo:
        gr.Markdown(
            "# emo_hf: multi-label emotion detection\n"
            f"Showing **`{html.escape(source)}`** (base model `{html.escape(base_model_name(model))}`, "
            f"{len(labels)} labels). A text can carry several emotions: each label has its own tuned threshold."
        )
        shift = gr.Slider(-0.5, 0.5, value=0.0, step=0.01, label="Threshold shift",
                          info="Added to every label's tuned threshold: move right for fewer, surer detections, "
                               "left for more.", elem_id="threshold-shift")
        with gr.Tab("Text"):
            with gr.Row():
                with gr.Column(scale=1):
                    text = gr.Textbox(lines=7, max_lines=20, label="Text", max_length=MAX_CHARS,
                                      placeholder="Type or paste a support ticket, a post, an email…",
                                      elem_id="emo-text")
                    button = gr.Button("Detect emotions", variant="primary", elem_id="emo-submit")
                    notice = gr.Markdown(elem_id="emo-notice")
                    examples = gr.Examples([[t] for _, t in EXAMPLES], inputs=[text], cache_examples=False,
                                           example_labels=[name for name, _ in EXAMPLES], label="Examples")
                with gr.Column(scale=1):
                    detected = gr.HTML(TextPrediction().detected_html(), elem_id="emo-detected")
                    label = gr.Label(num_top_classes=len(labels), label="Probability of every emotion",
                                     show_heading=False, elem_id="emo-label")
            bars = gr.BarPlot(x="emotion", y="probability", color="status", y_lim=[0, 1], sort="-y",
                              color_map={DETECTED: "#e4572e", BELOW: "#9aa5b1"}, x_label_angle=-45,
                              tooltip=["emotion", "probability", "threshold", "status"],
                              title="Probability per emotion (coloured: at or above its threshold)",
                              height=320, elem_id="emo-bars")
        with gr.Tab("Batch (CSV)"):
            gr.Markdown(f"Upload a CSV with a header row and one text per row (at most {MAX_ROWS:,} rows and "
                        f"{MAX_FILE_MB:g} MB). You get it back with every label's probability and the detected "
                        "labels. Larger files (CSV, TSV, JSONL, parquet; resumable, several GPUs): "
                        "`emo-hf predict MODEL --input FILE --output FILE` on your machine.")
            with gr.Row():
                file = gr.File(file_types=[".csv"], label="CSV file", elem_id="batch-file")
                with gr.Column():
                    column = gr.Dropdown(choices=["text"], value="text", allow_custom_value=True,
                                         label="Text column", elem_id="batch-column")
                    run_batch = gr.Button("Detect emotions in every row", variant="primary", elem_id="batch-submit")
            batch_message = gr.Markdown(elem_id="batch-message")
            result_file = gr.File(label="Result CSV", interactive=False, elem_id="batch-result")
            preview = gr.Dataframe(label="First 20 rows", interactive=False, elem_id="batch-preview")
        with gr.Tab("Model info"):
            gr.Markdown(model_info_markdown(model, source, report), elem_id="model-info")

        outputs = [label, bars, detected, notice]
        button.click(on_predict, [text, shift], outputs, api_name="predict")
        shift.release(on_predict, [text, shift], outputs, api_visibility="private")
        examples.load_input_event.then(on_predict, [text, shift], outputs, api_visibility="private")
        file.upload(on_upload, [file], [column], api_visibility="private")
        # One batch at a time: a 1,000-row file must not take every worker from people typing single texts.
        run_batch.click(on_batch, [file, column, shift], [result_file, preview, batch_message],
                        api_name="predict_csv", concurrency_limit=1, concurrency_id="batch")
    return demo


def build_missing_demo(message: str) -> gr.Blocks:
    """A one-page app that says why there is no model and how to get one."""
    with gr.Blocks(title="emo_hf: no model") as demo:
        gr.Markdown("# emo_hf: multi-label emotion detection")
        gr.Markdown(message, elem_id="missing-model")
    return demo


def create_app(source: str | None = None) -> gr.Blocks:
    """The app for `source` (default `model_source()`): the demo, or a page that explains what is missing."""
    source = source or model_source()
    message = missing_model_message(source)
    if message is not None:
        return build_missing_demo(message)
    try:
        model = load_model(source)
    except Exception as error:  # noqa: BLE001  (show the reason in the page instead of a dead Space)
        return build_missing_demo(
            f"**Could not load the model `{source}`:** `{type(error).__name__}: {error}`\n\n"
            "Set `EMO_HF_MODEL` to a folder written by `emo-hf run` / `save_pretrained`, or to a Hub repo id of an "
            "emo_hf model, e.g. `EMO_HF_MODEL=runs/default/model python space/app.py`."
        )
    return build_demo(model, source, load_report(source))


def serve(demo: gr.Blocks, **launch_kwargs: Any):
    """Queue (concurrency limit, bounded queue) and launch with the upload size limit.

    `launch_kwargs` go to `demo.launch`, e.g. `server_port=7860, prevent_thread_lock=True`.
    """
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    launch_kwargs.setdefault("max_file_size", int(MAX_FILE_MB * 1e6))  # bytes, as read_csv_upload counts
    return demo.launch(**launch_kwargs)


if __name__ == "__main__":
    serve(create_app())
