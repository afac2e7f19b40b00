"""Balancing on small hand-made fixtures: each method, the ISMOTE/SMOTE regions, undersampling, determinism."""

import numpy as np
import pytest

from emo_hf.data.balancing import balance, ismote_points, neighbor_table, smote_points


def fixture(seed: int = 0):
    """40 rows in 8-d: label 0 rare (6 positives), label 1 common (20), 14 no-emotion rows; row 5 has both."""
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(40, 8)).astype(np.float32)
    labels = np.zeros((40, 2), dtype=np.float32)
    labels[:6, 0] = 1
    labels[5:25, 1] = 1
    return embeddings, labels


def line_parameter(points, seeds, neighbors):
    """t with point = seed + t (neighbor - seed), and the distance of each point from that line."""
    direction = neighbors - seeds
    t = ((points - seeds) * direction).sum(1) / (direction * direction).sum(1)
    residual = np.linalg.norm(points - (seeds + t[:, None] * direction), axis=1)
    return t, residual


def test_smote_points_lie_on_the_segment():
    rng = np.random.default_rng(1)
    seeds, neighbors = rng.normal(size=(2000, 5)), rng.normal(size=(2000, 5))
    points, u = smote_points(seeds, neighbors, rng)
    t, residual = line_parameter(points.astype(np.float64), seeds, neighbors)
    assert residual.max() < 1e-5
    assert t.min() >= -1e-6 and t.max() <= 1 + 1e-6
    np.testing.assert_allclose(t, u, atol=1e-5)


@pytest.mark.parametrize("expansion", [0.25, 0.5, 1.0])
def test_ismote_points_fill_the_extended_segment_its_formula_defines(expansion):
    rng = np.random.default_rng(2)
    seeds, neighbors = rng.normal(size=(4000, 5)), rng.normal(size=(4000, 5))
    points, t_returned = ismote_points(seeds, neighbors, rng, expansion=expansion)
    t, residual = line_parameter(points.astype(np.float64), seeds, neighbors)
    np.testing.assert_allclose(t, t_returned, atol=1e-5)
    assert residual.max() < 1e-5  # moved along the seed-neighbour direction only
    # region: t in [-α, 1+α], reaching beyond both ends, which SMOTE never does
    assert t.min() >= -expansion - 1e-6 and t.max() <= 1 + expansion + 1e-6
    assert (t < 0).mean() > 0.05 and (t > 1).mean() > 0.05
    assert t.min() < -0.8 * expansion and t.max() > 1 + 0.8 * expansion


def test_ismote_follows_the_docstring_formula_exactly():
    """x_new = x_s + t (x_n - x_s), t = u + σ r, u ~ U(0,1), r ~ U(0, α), σ = -1 if u < 0.5 else +1."""
    seeds, neighbors = np.random.default_rng(4).normal(size=(2, 300, 6))
    alpha = 0.5
    points, t = ismote_points(seeds, neighbors, np.random.default_rng(9), expansion=alpha)
    replay = np.random.default_rng(9)  # same stream: u first, then r
    u = replay.random(300)
    r = replay.random(300) * alpha
    expected_t = np.where(u < 0.5, u - r, u + r)
    np.testing.assert_allclose(t, expected_t)
    np.testing.assert_allclose(points, seeds + expected_t[:, None] * (neighbors - seeds), rtol=1e-5, atol=1e-5)
    # a base nearer the seed moves towards (or past) the seed, one nearer the neighbour towards the neighbour
    assert (t[u < 0.5] <= u[u < 0.5]).all() and (t[u >= 0.5] >= u[u >= 0.5]).all()


def test_ismote_with_zero_expansion_is_smote():
    seeds, neighbors = np.zeros((50, 3)), np.ones((50, 3))
    a, _ = ismote_points(seeds, neighbors, np.random.default_rng(3), expansion=0.0)
    t, _ = line_parameter(a.astype(np.float64), seeds, neighbors)
    assert t.min() >= 0 and t.max() <= 1


def test_neighbor_table_excludes_self_even_with_identical_points():
    points = np.array([[0, 0], [0, 0], [1, 0], [5, 5], [5, 6]], dtype=np.float32)
    table = neighbor_table(points, k=2)
    assert table.shape == (5, 2)
    assert all(i not in table[i] for i in range(5))
    assert set(table[0]) == {1, 2}


@pytest.mark.parametrize("method", ["ismote", "smote", "random"])
def test_each_method_reaches_the_target_with_train_seeds(method):
    embeddings, labels = fixture()
    result = balance(embeddings, labels, method=method, target_per_label=12, keep_no_emotion=1.0, seed=7, show_progress=False)
    assert result.counts_before.tolist() == [6, 20]
    assert result.counts_after[0] >= 12 and result.counts_after[1] == 20 + (result.labels[result.is_synthetic][:, 1] > 0).sum()
    synthetic = result.is_synthetic
    assert synthetic.sum() == 12 - 6  # label 0 needs 6 more; label 1 is already above target
    assert (result.seed_index[synthetic] >= 0).all() and (result.seed_index[synthetic] < 6).all()
    # synthetic rows copy their seed's whole label vector
    np.testing.assert_array_equal(result.labels[synthetic], labels[result.seed_index[synthetic]])
    # real rows come first, unchanged
    real = ~synthetic
    np.testing.assert_array_equal(result.embeddings[real], embeddings[result.source_index[real]])
    if method == "random":
        assert (result.neighbor_index[synthetic] == -1).all()
        np.testing.assert_array_equal(result.embeddings[synthetic], embeddings[result.seed_index[synthetic]])
    else:
        neighbors = result.neighbor_index[synthetic]
        assert (labels[neighbors, 0] > 0).all()  # neighbours are positives of the same label
        assert (neighbors != result.seed_index[synthetic]).all()
        t, residual = line_parameter(
            result.embeddings[synthetic].astype(np.float64),
            embeddings[result.seed_index[synthetic]].astype(np.float64),
            embeddings[neighbors].astype(np.float64),
        )
        assert residual.max() < 1e-4
        if method == "smote":
            assert t.min() >= -1e-5 and t.max() <= 1 + 1e-5
        else:
            assert t.min() >= -0.5 - 1e-5 and t.max() <= 1.5 + 1e-5


def test_none_only_undersamples():
    embeddings, labels = fixture()
    result = balance(embeddings, labels, method="none", target_per_label=100, keep_no_emotion=0.5, seed=1, show_progress=False)
    assert not result.is_synthetic.any()
    assert result.no_emotion_before == 15 and result.no_emotion_after == 8  # round(0.5 * 15)
    assert len(result.labels) == 25 + 8
    assert result.counts_after.tolist() == [6, 20]


def test_undersampling_is_seeded_and_keeps_every_emotion_row():
    embeddings, labels = fixture()
    a = balance(embeddings, labels, method="none", keep_no_emotion=0.3, seed=1, show_progress=False)
    b = balance(embeddings, labels, method="none", keep_no_emotion=0.3, seed=1, show_progress=False)
    c = balance(embeddings, labels, method="none", keep_no_emotion=0.3, seed=2, show_progress=False)
    np.testing.assert_array_equal(a.source_index, b.source_index)
    assert set(range(25)) <= set(a.source_index.tolist())
    assert not np.array_equal(a.source_index, c.source_index)


def test_ismote_is_deterministic_for_a_seed():
    embeddings, labels = fixture()
    runs = [balance(embeddings, labels, target_per_label=30, seed=s, show_progress=False) for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0].embeddings, runs[1].embeddings)
    np.testing.assert_array_equal(runs[0].neighbor_index, runs[1].neighbor_index)
    assert not np.array_equal(runs[0].embeddings, runs[2].embeddings)


def test_rarest_first_and_shared_labels_count():
    """Oversampling label 0 with seed row 5 (labels 0 and 1) also raises label 1: it needs fewer synthetic rows."""
    embeddings, labels = fixture()
    result = balance(embeddings, labels, target_per_label=30, keep_no_emotion=1.0, seed=0, show_progress=False)
    assert (result.counts_after >= 30).all()
    for_label_0 = result.synthetic_label == 0
    assert for_label_0.sum() == 24
    from_label_0 = int((result.labels[for_label_0][:, 1] > 0).sum())
    assert (result.synthetic_label == 1).sum() == max(0, 30 - 20 - from_label_0)


def test_bad_arguments():
    embeddings, labels = fixture()
    with pytest.raises(ValueError, match="'magic'.*ismote"):
        balance(embeddings, labels, method="magic")
    with pytest.raises(ValueError, match="keep_no_emotion"):
        balance(embeddings, labels, keep_no_emotion=1.5)
    with pytest.raises(ValueError, match="labels"):
        balance(embeddings, labels[:10])
    empty = labels.copy()
    empty[:, 0] = 0
    with pytest.raises(ValueError, match="no positive rows"):
        balance(embeddings, empty, target_per_label=5, label_names=["fear", "joy"], show_progress=False)
