"""The Gradio Space (space/app.py) on a tiny random emo_hf model: served on 127.0.0.1, called through gradio_client
(single texts and the CSV batch), limits, the model-info panel, `python space/app.py` itself without emo_hf (the
Space's trust_remote_code path) and a real headless Chromium driven by Selenium.

Set EMO_HF_SPACE_SCREENSHOT=docs/space_screenshot.png to also keep the browser test's screenshot there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from emo_hf.labels import DEFAULT_LABELS  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_FILE = REPO_ROOT / "space" / "app.py"
LABELS = list(DEFAULT_LABELS)
# Words the tiny tokenizer of conftest knows, so the texts differ in tokens (and in probabilities).
TEXTS = ["i love this day so much !", "why would you do that ? i hate it", "so sad and scared of the dark"]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    """space/app.py imported as a module (it is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("emo_space_app", APP_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def space_model_dir(tiny_mistral_dir, tmp_path_factory):
    """An emo_hf model folder on conftest's tiny random Mistral: 15 labels, varied thresholds, max_length 12, and a
    report.json with fabricated-but-consistent metrics (tests/fake_model.fake_report: NOT a real evaluation)."""
    import torch

    from emo_hf.modeling import EmoModelForMultiLabel
    from fake_model import fake_report

    torch.manual_seed(0)
    model = EmoModelForMultiLabel.from_backbone(tiny_mistral_dir, labels=LABELS, max_length=12)
    with torch.no_grad():  # a head with some spread, so probabilities and detections differ between labels/texts
        model.score.weight.normal_(0, 0.5)
    thresholds = [round(0.3 + 0.03 * i, 2) for i in range(len(LABELS))]
    model.set_thresholds(thresholds)
    folder = tmp_path_factory.mktemp("space-model") / "model"
    model.save_pretrained(folder)
    (folder / "report.json").write_text(json.dumps(fake_report(LABELS, thresholds)), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def app_process(space_model_dir, tmp_path_factory):
    """`python space/app.py` as a Space runs it: EMO_HF_MODEL is a Hub repo id (served by the stand-in Hub of
    tests/hub_server.py through HF_ENDPOINT) and emo_hf cannot be imported, so the model comes from the Hub through
    trust_remote_code. Started early (it takes a while); the test that uses it comes last."""
    from hub_server import TOKEN, HubServer, subprocess_env

    from emo_hf.hub import upload_folder

    server = HubServer(tokens={TOKEN: "tester"}).start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_ENDPOINT", server.url)
        upload_folder(space_model_dir, "my-org/emo-space-test", token=TOKEN)
    port = _free_port()
    tmp = tmp_path_factory.mktemp("app-process")
    env = dict(subprocess_env(server, tmp), EMO_HF_MODEL="my-org/emo-space-test", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False")
    env.pop("GRADIO_SERVER_NAME", None)  # the default must be localhost
    code = ("import runpy, sys; sys.modules['emo_hf'] = None; "  # `import emo_hf` now raises ImportError
            f"runpy.run_path({str(APP_FILE)!r}, run_name='__main__')")
    log = tmp / "app.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=tmp)
    yield process, port, log, server
    process.terminate()
    process.wait(timeout=30)
    server.stop()


@pytest.fixture(scope="module")
def model(app, space_model_dir, app_process):  # app_process: start the subprocess before the slow in-process work
    return app.load_model(str(space_model_dir))


@pytest.fixture(scope="module")
def server(app, model, space_model_dir):
    """build_demo + serve on 127.0.0.1 in this process (prevent_thread_lock): yields the URL."""
    demo = app.build_demo(model, str(space_model_dir), app.load_report(str(space_model_dir)))
    port = _free_port()
    app.serve(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", demo
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False)


def _confidences(label_output: dict) -> dict[str, float]:
    return {row["label"]: row["confidence"] for row in label_output["confidences"]}


# ---- served app + gradio_client --------------------------------------------------------------------------------------
def test_app_serves_on_localhost_with_both_endpoints(server, client):
    url, demo = server
    assert url.startswith("http://127.0.0.1:") and demo.server_name == "127.0.0.1"
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/predict", "/predict_csv"} <= set(endpoints)


@pytest.mark.parametrize("shift", [0.0, -0.15])
def test_client_predict_equals_model_predict(client, model, shift):
    for text in TEXTS:
        label, bars, detected_html, notice = client.predict(text, shift, api_name="/predict")
        expected = model.predict([text], threshold_shift=shift)[0]
        got = _confidences(label)
        assert set(got) == set(LABELS)
        assert all(0.0 <= p <= 1.0 for p in got.values())
        assert got == pytest.approx(expected["probabilities"], abs=1e-9)
        # the bar chart has one bar per label, coloured as detected exactly for model.predict's labels
        frame = pd.DataFrame(bars["data"], columns=bars["columns"])
        assert sorted(frame["emotion"]) == sorted(LABELS)
        assert set(frame.loc[frame["status"] == "detected", "emotion"]) == set(expected["labels"])
        chips = [name for name in LABELS if f"data-label='{name}'" in detected_html]
        assert set(chips) == set(expected["labels"])
        assert notice == ""
    # the probabilities depend on the text (a constant answer would pass the checks above)
    first = [_confidences(client.predict(t, 0.0, api_name="/predict")[0]) for t in TEXTS[:2]]
    assert first[0] != pytest.approx(first[1], abs=1e-4)


def test_threshold_shift_changes_detections(client, model):
    detected = {}
    for shift in (-0.5, 0.5):
        html = client.predict(TEXTS[0], shift, api_name="/predict")[2]
        detected[shift] = {name for name in LABELS if f"data-label='{name}'" in html}
        assert detected[shift] == set(model.predict([TEXTS[0]], threshold_shift=shift)[0]["labels"])
    assert len(detected[0.5]) < len(detected[-0.5])


def test_empty_input_gets_a_friendly_message(client):
    label, bars, detected_html, notice = client.predict("   \n ", 0.0, api_name="/predict")
    assert "Nothing to read yet" in notice
    assert not label or not label.get("confidences")
    assert bars["data"] == []


def test_long_input_is_truncated_with_a_notice(client, model):
    text = "i love this day so much ! " * 10  # 70 tokens, max_length 12
    label, _, _, notice = client.predict(text, 0.0, api_name="/predict")
    assert "Truncated" in notice and "reads the first 12" in notice
    assert _confidences(label) == pytest.approx(model.predict([text])[0]["probabilities"], abs=1e-9)


# ---- batch (CSV) -----------------------------------------------------------------------------------------------------
def test_batch_csv_round_trip(client, model, tmp_path):
    rows = pd.DataFrame({"id": ["a1", "b2", "c3", "d4"],
                         "body": [TEXTS[0], 'a text with "quotes", commas\nand a newline', "", TEXTS[2]]})
    path = tmp_path / "tickets.csv"
    rows.to_csv(path, index=False)
    out_path, preview, message = client.predict(handle_file(str(path)), "body", 0.0, api_name="/predict_csv")
    result = pd.read_csv(out_path, dtype={"id": str, "body": str, "detected_labels": str})
    result[["body", "detected_labels"]] = result[["body", "detected_labels"]].fillna("")
    assert Path(out_path).name == "tickets_emotions.csv" and "4 rows done" in message
    assert list(result["id"]) == list(rows["id"]) and list(result["body"]) == list(rows["body"])
    assert list(result.columns) == ["id", "body"] + [f"prob_{name}" for name in LABELS] + ["detected_labels"]
    texts = [t for t in rows["body"] if t]
    expected = model.predict(texts)
    done = result[result["body"] != ""]
    for (_, row), want in zip(done.iterrows(), expected):
        assert [row[f"prob_{name}"] for name in LABELS] == pytest.approx(
            [want["probabilities"][name] for name in LABELS], abs=1e-6)
        assert set(filter(None, row["detected_labels"].split(";"))) == set(want["labels"])
    empty = result[result["body"] == ""].iloc[0]  # the empty row: no probabilities, no labels
    assert pd.isna(empty["prob_joy"]) and empty["detected_labels"] == ""


def test_batch_wrong_column_is_a_clear_error(client, tmp_path):
    path = tmp_path / "posts.csv"
    pd.DataFrame({"message": TEXTS}).to_csv(path, index=False)
    with pytest.raises(Exception, match=r"no column 'text'.*\['message'\]"):
        client.predict(handle_file(str(path)), "text", 0.0, api_name="/predict_csv")


def test_batch_limits(app, model, tmp_path):
    path = tmp_path / "many.csv"
    pd.DataFrame({"text": ["i love it"] * 11}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"more than 10 rows; the limit here is 10"):
        app.read_csv_upload(path, max_rows=10)
    assert len(app.read_csv_upload(path, max_rows=11)) == 11
    with pytest.raises(ValueError, match=r"is 0\.0 MB; the limit here is 1e-05 MB"):
        app.read_csv_upload(path, max_mb=0.00001)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        app.read_csv_upload(tmp_path / "empty.csv")
    (tmp_path / "latin1.csv").write_bytes("text\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        app.read_csv_upload(tmp_path / "latin1.csv")


# ---- model info, model choice ----------------------------------------------------------------------------------------
def test_model_info_shows_base_model_labels_thresholds_and_report_metrics(app, model, space_model_dir):
    report = app.load_report(str(space_model_dir))
    info = app.model_info_markdown(model, str(space_model_dir), report)
    assert str(space_model_dir) in info and model.config.backbone_name_or_path in info
    for name, threshold in zip(LABELS, model.config.thresholds):
        assert f"| {name} | {threshold:.2f} |" in info
    assert f"| micro_f1 | {report['metrics_tuned']['micro_f1']:.3f} | {report['metrics_at_0.5']['micro_f1']:.3f} |" \
        in info
    assert "No report.json" in app.model_info_markdown(model, "somewhere", None)


def test_model_source_and_missing_model_page(app, monkeypatch, tmp_path):
    assert app.model_source({}) == str(app.DEFAULT_MODEL)
    assert app.model_source({"EMO_HF_MODEL": " me/emo-model "}) == "me/emo-model"
    assert app.model_source({"EMO_HF_MODEL": "space"}) in ("space", str(app.REPO_ROOT / "space"))
    assert Path(app.model_source({"EMO_HF_MODEL": "space"})).resolve() == APP_FILE.parent
    monkeypatch.setattr(app, "DEFAULT_MODEL", tmp_path / "runs" / "default" / "model")
    message = app.missing_model_message(str(app.DEFAULT_MODEL))
    assert "emo-hf run --out runs/default" in message and "EMO_HF_MODEL=" in message
    demo = app.create_app(str(app.DEFAULT_MODEL))  # a page that explains, not a crash
    assert any("emo-hf run --out runs/default" in str(getattr(block, "value", ""))
               for block in demo.blocks.values())
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    demo = app.create_app(str(broken))
    assert any("Could not load the model" in str(getattr(block, "value", "")) for block in demo.blocks.values())


def test_python_space_app_py_serves_a_hub_model_without_emo_hf(app_process, model):
    """The Space's own start: `python space/app.py`, EMO_HF_MODEL a Hub repo id, model code from the repo."""
    import requests

    process, port, log, hub = app_process
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"space/app.py exited: {log.read_text()[-3000:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            # The port opens a moment before gradio prints its URL (seen on a loaded 2-core machine): wait for both.
            if "Running on local URL:  http://127.0.0.1:" in log.read_text():
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no answer on port {port}: {log.read_text()[-3000:]}"
        time.sleep(0.5)
    url = f"http://127.0.0.1:{port}/"
    label, *_ = Client(url, verbose=False).predict(TEXTS[1], 0.0, api_name="/predict")
    assert _confidences(label) == pytest.approx(model.predict([TEXTS[1]])[0]["probabilities"], abs=1e-6)
    # the page names the Hub model, and the info panel has the metrics of the repo's report.json
    values = [str(c.get("props", {}).get("value", "")) for c in requests.get(url + "config", timeout=30).json()["components"]]
    assert any("Showing **`my-org/emo-space-test`**" in v for v in values)
    assert any("| micro_f1 |" in v and "Model shown:** `my-org/emo-space-test`" in v for v in values)
    served = {path.rsplit("/", 1)[-1] for method, path, status in hub.requests if method == "GET" and status == 200}
    assert {"config.json", "modeling.py", "report.json"} <= served, served


# ---- real browser ----------------------------------------------------------------------------------------------------
@pytest.mark.skipif(CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
                    reason="Debian's Chromium is not installed: apt-get install -y chromium chromium-driver")
def test_browser_types_submits_and_sees_emotion_bars(app, server, model, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1600", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        options.add_argument(flag)
    # An explicit chromedriver: Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(server[0])
        box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#emo-text textarea"))
        box.send_keys(TEXTS[0])
        driver.find_element(By.ID, "emo-submit").click()
        # gr.Label: one meter per label, with the model's probability
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#emo-label meter")) == len(LABELS))
        meters = driver.find_elements(By.CSS_SELECTOR, "#emo-label meter")
        shown = {m.get_attribute("aria-label"): float(m.get_attribute("value")) for m in meters}
        expected = model.predict([TEXTS[0]])[0]
        assert set(shown) == set(LABELS)
        assert shown == pytest.approx(expected["probabilities"], abs=1e-3)
        # the bar chart: one bar mark per label in the Vega SVG
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#emo-bars .mark-rect path")) == len(LABELS))
        # the detected emotions, as chips
        chips = driver.find_elements(By.CSS_SELECTOR, "#emo-detected .emo-chip")
        assert {c.get_attribute("data-label") for c in chips} == set(expected["labels"])
        # an example fills the box and runs at once
        driver.find_element(By.XPATH, "//button[contains(., 'Support ticket')]").click()
        ticket = model.predict([dict(app.EXAMPLES)["Support ticket"]])[0]["probabilities"]

        def shows_ticket(d):
            meters = d.find_elements(By.CSS_SELECTOR, "#emo-label meter")
            got = {m.get_attribute("aria-label"): float(m.get_attribute("value")) for m in meters}
            return len(got) == len(LABELS) and all(abs(got[k] - ticket[k]) < 1e-3 for k in LABELS)

        wait.until(shows_ticket)
        assert box.get_attribute("value").startswith("Ticket #")
        path = tmp_path / "space.png"
        driver.save_screenshot(str(path))
        assert path.stat().st_size > 10_000
        if os.environ.get("EMO_HF_SPACE_SCREENSHOT"):
            driver.save_screenshot(os.environ["EMO_HF_SPACE_SCREENSHOT"])
    finally:
        driver.quit()
