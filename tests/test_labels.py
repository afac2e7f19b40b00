"""Label sets: the 15 defaults in the issue's order, GoEmotions' 28 names, and validation of custom sets."""

from pathlib import Path

import pytest

from emo_hf.labels import DEFAULT_LABELS, GOEMOTIONS_LABELS, resolve_labels

from goemotions_path import goemotions_dir


def test_default_labels_in_issue_order():
    assert list(DEFAULT_LABELS) == [
        "fear", "sadness", "disgust", "disapproval", "annoyance", "anger", "disappointment", "optimism",
        "amusement", "surprise", "admiration", "excitement", "confusion", "joy", "love",
    ]
    assert set(DEFAULT_LABELS) <= set(GOEMOTIONS_LABELS)


def test_goemotions_names_match_labels_txt():
    folder = goemotions_dir()
    if folder is None:
        pytest.skip("GoEmotions folder not found (set EMO_HF_GOEMOTIONS to the folder holding labels.txt)")
    names = Path(folder, "labels.txt").read_text(encoding="utf-8").split()
    assert names == list(GOEMOTIONS_LABELS)
    assert GOEMOTIONS_LABELS[27] == "neutral"


def test_resolve_named_and_custom_sets():
    assert resolve_labels(None) == list(DEFAULT_LABELS)
    assert resolve_labels("goemotions") == list(GOEMOTIONS_LABELS)
    assert resolve_labels("joy, anger") == ["joy", "anger"]
    assert resolve_labels(["love", "fear"], valid=GOEMOTIONS_LABELS) == ["love", "fear"]


def test_unknown_label_lists_valid_names():
    with pytest.raises(ValueError) as error:
        resolve_labels(["joy", "happiness"], valid=GOEMOTIONS_LABELS)
    message = str(error.value)
    assert "'happiness'" in message and "admiration" in message and "neutral" in message


def test_duplicate_and_empty_sets_rejected():
    with pytest.raises(ValueError, match="repeated"):
        resolve_labels(["joy", "joy"])
    with pytest.raises(ValueError, match="empty"):
        resolve_labels([])
