"""Two classic baselines scored on the same split as the model: TF-IDF and frozen sentence embeddings, each followed by
one-vs-rest logistic regression (scikit-learn). Both return probabilities; thresholds are tuned on validation like the
model's (see emo_hf.metrics.tune_thresholds and emo_hf.evaluation.write_report).

    >>> from emo_hf.baselines import tfidf_logreg_baseline, embedding_logreg_baseline
    >>> probs = tfidf_logreg_baseline(train_texts, y_train, {"validation": val_texts, "test": test_texts})
    >>> probs["test"].shape                       # float64 [n_test, L]
    >>> from emo_hf.data.embedding import embed_texts
    >>> probs = embedding_logreg_baseline(embed_texts(train_texts), y_train, {"test": embed_texts(test_texts)})

A label with a single class in `y_train` (no positives, or all positive) cannot be fitted by logistic regression; it
gets the constant probability of its training rate (0 or 1) instead of an error, so a small slice still runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _check_targets(y_train: np.ndarray, n_train: int) -> np.ndarray:
    y = np.asarray(y_train)
    if y.ndim != 2 or y.shape[0] != n_train:
        raise ValueError(f"y_train must be multi-hot [n_train, L] with n_train = {n_train} rows; got shape {y.shape}.")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_train must hold only 0/1 values (multi-hot); binarise it first, e.g. (y >= 0.5).astype(int).")
    return y.astype(np.int64)


def _one_vs_rest(features_train: Any, y: np.ndarray, features_by_split: Mapping[str, Any], make_model) -> dict[str, np.ndarray]:
    """Fit one binary model per label (columns of `y`) and return P(label) per split, float64 [n_split, L].

    Written as a loop rather than sklearn's OneVsRestClassifier so a label with one class in training (possible on a
    small slice) becomes a constant column instead of an error; the fitted models are the same.
    """
    from tqdm.auto import tqdm

    out = {name: np.zeros((features.shape[0], y.shape[1])) for name, features in features_by_split.items()}
    for j in tqdm(range(y.shape[1]), desc="one-vs-rest logistic regression", unit="label", leave=False):
        column = y[:, j]
        if column.min() == column.max():
            for name in out:
                out[name][:, j] = float(column[0])
            continue
        model = make_model().fit(features_train, column)
        for name, features in features_by_split.items():
            out[name][:, j] = model.predict_proba(features)[:, 1]
    return out


def tfidf_logreg_baseline(
    train_texts: Sequence[str],
    y_train: np.ndarray,
    eval_texts_by_split: Mapping[str, Sequence[str]],
    *,
    C: float = 1.0,
    class_weight: str | None = None,
) -> dict[str, np.ndarray]:
    """TF-IDF (word 1-2 grams + character 2-5 grams within words) + one-vs-rest logistic regression.

    Returns `{split: probabilities float64 [n_split, L]}` for every split of `eval_texts_by_split`.

    Why these settings: character n-grams catch the misspellings, elongations ("soooo") and emoji-adjacent tokens of
    Reddit text that words miss; sublinear tf and `min_df` keep the vocabulary small and robust. C and class_weight
    were chosen on GoEmotions validation only (train -> dev, 15 default labels, macro F1 with per-label thresholds
    tuned on dev; 2026-11-25): class_weight None C=1 .514, C=4 .506, C=16 .488; "balanced" C=1 .507, C=4 .501.
    With thresholds tuned per label (the report's protocol) the unweighted model is the strongest: tuning already
    compensates the class imbalance that "balanced" weights address. At the fixed threshold 0.5, "balanced" is far
    better (dev .485 vs .318), so pass `class_weight="balanced"` for a baseline scored at 0.5 only.
    """
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = [str(t) for t in train_texts]
    y = _check_targets(y_train, len(texts))
    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True,
                           token_pattern=r"(?u)\b\w+\b|[^\w\s]")  # keep one-character words and punctuation ("!", "?")
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True, lowercase=True,
                           max_features=200_000)
    train_features = hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
    features_by_split = {
        name: hstack([word.transform(list(split)), char.transform(list(split))]).tocsr()
        for name, split in eval_texts_by_split.items()
    }
    # liblinear, dual formulation: same L2 optimum, ~10x faster than the primal when features outnumber examples
    return _one_vs_rest(train_features, y, features_by_split,
                        lambda: LogisticRegression(C=C, solver="liblinear", dual=True, class_weight=class_weight,
                                                   random_state=0, max_iter=1000))


def embedding_logreg_baseline(
    train_emb: np.ndarray,
    y_train: np.ndarray,
    eval_emb_by_split: Mapping[str, np.ndarray],
    *,
    C: float = 1.0,
    class_weight: str | None = None,
) -> dict[str, np.ndarray]:
    """Frozen sentence embeddings `[n, d]` + standardisation + one-vs-rest logistic regression (lbfgs).

    Returns `{split: probabilities float64 [n_split, L]}`. The embeddings come from a frozen encoder (e.g.
    `emo_hf.data.embedding.embed_texts`, all-MiniLM-L6-v2 by default); nothing is fine-tuned, which is the point of
    this baseline: it shows what a frozen sentence vector alone carries. Standardising the features makes one `C`
    suit every encoder. Chosen on GoEmotions validation only (all-MiniLM-L6-v2, train -> dev, 15 default labels, macro
    F1 with thresholds tuned on dev; 2026-11-25): class_weight None C=1 .407, C=0.05 .406; "balanced" C=0.05 .386.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train = np.asarray(train_emb, dtype=np.float64)
    if train.ndim != 2:
        raise ValueError(f"train_emb must be 2-D [n_train, dim]; got shape {train.shape}.")
    y = _check_targets(y_train, train.shape[0])
    evals = {}
    for name, emb in eval_emb_by_split.items():
        array = np.asarray(emb, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != train.shape[1]:
            raise ValueError(f"eval_emb_by_split[{name!r}] has shape {array.shape}; expected [n, {train.shape[1]}] "
                             "like train_emb (same encoder).")
        evals[name] = array
    # one scaler shared by all labels (fit once), then a plain logistic regression per label
    scaler = StandardScaler().fit(train)
    train = scaler.transform(train)
    evals = {name: scaler.transform(array) for name, array in evals.items()}
    return _one_vs_rest(train, y, evals,
                        lambda: LogisticRegression(C=C, class_weight=class_weight, max_iter=2000, random_state=0))
