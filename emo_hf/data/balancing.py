"""Balance a multi-label training split in sentence-embedding space: no-emotion undersampling + per-emotion oversampling.

    >>> from emo_hf.data.balancing import balance
    >>> result = balance(embeddings, labels, method="ismote", target_per_label=1500, keep_no_emotion=0.5, seed=42)
    >>> result.embeddings.shape, result.is_synthetic.sum()

Only ever call this on the train split: validation and test keep their natural distribution.

Methods (for each emotion with fewer than `target_per_label` positives, rarest first):
- `ismote` (default): improved SMOTE, see `ismote_points` for the formula.
- `smote`: the classic interpolation on the seed–neighbour segment (Chawla et al., JAIR 2002).
- `random`: duplicates of randomly chosen positive rows (text and embedding copied).
- `none`: no oversampling (undersampling still applies).

A synthetic row copies its seed's whole label vector, so a seed that also carries other emotions raises their counts
too; emotions are processed rarest first and counts are updated after each, so every emotion ends at or above the
target and the most frequent emotions are not oversampled needlessly. Seeds and neighbours are always real rows of
the input (never synthetic rows), which is what the leakage guard checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS: tuple[str, ...] = ("ismote", "smote", "random", "none")


@dataclass
class BalanceResult:
    """Balanced rows: first the kept real rows (input order), then synthetic rows (generation order).

    Index arrays refer to rows of the input; -1 means "not applicable".
    """

    embeddings: np.ndarray  # [n_out, dim] float32
    labels: np.ndarray  # [n_out, n_labels] float32 multi-hot
    source_index: np.ndarray  # [n_out] input row of a real row, -1 for synthetic rows
    seed_index: np.ndarray  # [n_out] input row a synthetic row was made from, -1 for real rows
    neighbor_index: np.ndarray  # [n_out] neighbour used (smote / ismote), -1 otherwise
    is_synthetic: np.ndarray  # [n_out] bool
    synthetic_label: np.ndarray  # [n_out] the emotion a synthetic row was generated for, -1 for real rows
    counts_before: np.ndarray  # [n_labels] positives per label in the input
    counts_after: np.ndarray  # [n_labels] positives per label in the output
    no_emotion_before: int = 0
    no_emotion_after: int = 0
    settings: dict = field(default_factory=dict)


def smote_points(seeds: np.ndarray, neighbors: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE: `x_new = x_s + u · (x_n − x_s)`, `u ~ U(0, 1)` -> (points [m, dim], t [m] = u).

    `seeds`, `neighbors`: [m, dim]. Every point lies on the segment between its seed and neighbour.
    """
    u = rng.random(len(seeds), dtype=np.float64)  # [m]
    points = seeds + (u[:, None] * (neighbors - seeds)).astype(seeds.dtype)
    return points.astype(np.float32), u


def ismote_points(
    seeds: np.ndarray, neighbors: np.ndarray, rng: np.random.Generator, expansion: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """ISMOTE: a base point on the seed–neighbour segment, moved along that direction by a random multiple of the
    seed–neighbour distance -> (points [m, dim], t [m]).

    Reference: "ISMOTE", an enhanced SMOTE that "first generates a base sample between two original samples; then the
    Euclidean distance between the two samples is multiplied by a random number ... added or subtracted based on the
    distance between the base sample and the original samples, ensuring that new samples are generated around the two
    original samples" (Scientific Reports 15, 2025, doi:10.1038/s41598-025-09506-w). The abstract does not pin the
    random ranges down; this implementation defines them as follows. For a seed `x_s` and neighbour `x_n`:

        d      = ‖x_n − x_s‖,  e = (x_n − x_s) / d                 (unit seed→neighbour direction)
        u      ~ U(0, 1)                                            base position
        x_b    = x_s + u · (x_n − x_s)                              base sample (SMOTE's point)
        r      ~ U(0, α)                                            α = `expansion` (default 0.5)
        σ      = −1 if u < 0.5 (base nearer the seed) else +1       (nearer the neighbour)
        x_new  = x_b + σ · r · d · e  =  x_s + t · (x_n − x_s),   t = u + σ · r

    So a point is pushed towards (and possibly past) whichever original sample its base is nearer, and
    `t ∈ [−α, 1 + α]`: the synthetic points cover the seed–neighbour segment extended by α·d beyond both ends,
    instead of SMOTE's `t ∈ [0, 1]`. With α = 0 ISMOTE is SMOTE.
    """
    if expansion < 0:
        raise ValueError(f"expansion must be >= 0, got {expansion!r}; e.g. expansion=0.5.")
    u = rng.random(len(seeds), dtype=np.float64)  # [m]
    r = rng.random(len(seeds), dtype=np.float64) * expansion  # [m]
    sign = np.where(u < 0.5, -1.0, 1.0)
    t = u + sign * r  # [m], in [-expansion, 1 + expansion]
    points = seeds + (t[:, None] * (neighbors - seeds)).astype(seeds.dtype)
    return points.astype(np.float32), t


def neighbor_table(points: np.ndarray, k: int) -> np.ndarray:
    """[n, k] indices of each point's k nearest other points (scikit-learn NearestNeighbors, Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(points) - 1)
    finder = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(points)
    found = finder.kneighbors(points, return_distance=False)  # [n, k+1], usually self first
    not_self = found != np.arange(len(points))[:, None]
    # Identical points can push `self` out of first place (or out of the list): keep the first k non-self entries.
    order = np.argsort(~not_self, axis=1, kind="stable")
    return np.take_along_axis(found, order, axis=1)[:, :k]


def balance(
    embeddings: np.ndarray,
    labels: np.ndarray,
    method: str = "ismote",
    target_per_label: int = 1500,
    keep_no_emotion: float = 0.5,
    k_neighbors: int = 5,
    expansion: float = 0.5,
    seed: int = 42,
    show_progress: bool = True,
    label_names: list[str] | None = None,
) -> BalanceResult:
    """Undersample no-emotion rows to `keep_no_emotion` of them, then oversample every label below
    `target_per_label` positives with `method`. `embeddings` [n, dim], `labels` [n, n_labels] multi-hot.
    Deterministic for a given `seed`.
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise ValueError(f"Unknown balancing method {method!r}; choose one of {', '.join(METHODS)}, e.g. method='ismote'.")
    if not 0.0 <= keep_no_emotion <= 1.0:
        raise ValueError(f"keep_no_emotion must be a fraction in [0, 1], got {keep_no_emotion!r}; e.g. keep_no_emotion=0.5.")
    if target_per_label < 0:
        raise ValueError(f"target_per_label must be >= 0, got {target_per_label!r}.")
    if k_neighbors < 1:
        raise ValueError(f"k_neighbors must be >= 1, got {k_neighbors!r}; e.g. k_neighbors=5.")
    embeddings = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.float32)
    if embeddings.ndim != 2 or labels.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings {embeddings.shape} and labels {labels.shape} must be [n, dim] and [n, n_labels].")
    n_labels = labels.shape[1]
    names = label_names or [str(i) for i in range(n_labels)]
    rng = np.random.default_rng(seed)
    positive = labels > 0  # [n, n_labels]

    # 1. no-emotion undersampling
    no_emotion = np.flatnonzero(~positive.any(axis=1))
    n_keep = int(round(keep_no_emotion * len(no_emotion)))
    kept_no_emotion = np.sort(rng.choice(no_emotion, size=n_keep, replace=False)) if n_keep else no_emotion[:0]
    kept = np.sort(np.concatenate([np.flatnonzero(positive.any(axis=1)), kept_no_emotion]))

    counts_before = positive.sum(axis=0).astype(np.int64)
    counts = positive[kept].sum(axis=0).astype(np.int64)
    seeds_all, neighbors_all, points_all, for_label = [], [], [], []

    # 2. oversampling, rarest label first (stable order for ties)
    order = np.argsort(counts, kind="stable")
    bar = tqdm(order, desc=f"balancing ({method})", disable=not show_progress, unit="label")
    for label in bar:
        need = int(target_per_label - counts[label])
        if method == "none" or need <= 0:
            continue
        members = np.flatnonzero(positive[:, label])  # real positives of this label (all kept: they have an emotion)
        if len(members) == 0:
            raise ValueError(
                f"Label {names[label]!r} has no positive rows in the train split, so it cannot be oversampled; "
                f"drop it from the label set or add examples."
            )
        bar.set_postfix_str(f"{names[label]}: {counts[label]} -> {target_per_label}")
        # round-robin over a seeded permutation: every positive seeds about the same number of points
        seed_pos = np.resize(rng.permutation(len(members)), need)  # [need]
        if method == "random" or len(members) < 2:  # one positive has no neighbour: duplicate it
            seeds, neighbors = members[seed_pos], np.full(need, -1)
            points = embeddings[seeds]
        else:
            table = neighbor_table(embeddings[members], k_neighbors)  # [m, k] positions within members
            pick = rng.integers(0, table.shape[1], size=need)
            seeds, neighbors = members[seed_pos], members[table[seed_pos, pick]]
            make = ismote_points if method == "ismote" else smote_points
            extra = {"expansion": expansion} if method == "ismote" else {}
            points, _ = make(embeddings[seeds], embeddings[neighbors], rng, **extra)
        seeds_all.append(seeds)
        neighbors_all.append(neighbors)
        points_all.append(points)
        for_label.append(np.full(need, label))
        counts += positive[seeds].sum(axis=0)

    dim = embeddings.shape[1]
    seeds = np.concatenate(seeds_all) if seeds_all else np.zeros(0, dtype=np.int64)
    neighbors = np.concatenate(neighbors_all) if neighbors_all else np.zeros(0, dtype=np.int64)
    points = np.concatenate(points_all) if points_all else np.zeros((0, dim), dtype=np.float32)
    n_real, n_synthetic = len(kept), len(seeds)
    out_labels = np.concatenate([labels[kept], labels[seeds]])
    return BalanceResult(
        embeddings=np.concatenate([embeddings[kept], points]).astype(np.float32),
        labels=out_labels,
        source_index=np.concatenate([kept, np.full(n_synthetic, -1)]).astype(np.int64),
        seed_index=np.concatenate([np.full(n_real, -1), seeds]).astype(np.int64),
        neighbor_index=np.concatenate([np.full(n_real, -1), neighbors]).astype(np.int64),
        is_synthetic=np.concatenate([np.zeros(n_real, bool), np.ones(n_synthetic, bool)]),
        synthetic_label=np.concatenate([np.full(n_real, -1)] + for_label).astype(np.int64),
        counts_before=counts_before,
        counts_after=(out_labels > 0).sum(axis=0).astype(np.int64),
        no_emotion_before=int(len(no_emotion)),
        no_emotion_after=int(n_keep),
        settings={
            "method": method,
            "target_per_label": int(target_per_label),
            "keep_no_emotion": float(keep_no_emotion),
            "k_neighbors": int(k_neighbors),
            "expansion": float(expansion) if method == "ismote" else None,
            "seed": int(seed),
        },
    )
