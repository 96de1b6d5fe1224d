"""Reward-evaluation metrics; expected values worked out by hand in the docstrings, or by brute force."""

import math

import numpy as np
import pytest
import torch

from reward.eval.metrics import (
                                 pairwise_accuracy,
                                 pairwise_accuracy_with_ties,
                                 parse_ranking,
                                 position_bias,
                                 spearman_fisher_mean,
                                 strict_group_accuracy,
                                 strict_group_accuracy_by_k,
                                 )


def _brute_force_ties(diff: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """Literal Deutsch et al. counts for every candidate eps; smallest eps among the maxima."""
    best = (-1.0, 0.0)
    for eps in sorted({0.0, *np.abs(diff).tolist()}):
        mt = np.abs(diff) <= eps
        ht = label == 0
        c = np.sum(~ht & ~mt & (np.sign(diff) == np.sign(label)))
        d = np.sum(~ht & ~mt & (np.sign(diff) != np.sign(label)))
        t_h, t_m, t_hm = np.sum(ht & ~mt), np.sum(~ht & mt), np.sum(ht & mt)
        acc = (c + t_hm) / (c + d + t_h + t_m + t_hm)
        if acc > best[0] + 1e-12:
            best = (acc, eps)
    return best


def test_ties_by_hand():
    """diff = [2, 0.5, -0.1, 1], human = [1, 0, 0, -1].
    eps=0:   C = 1 (pair 0), D = 1 (pair 3), T_h = 2 -> 1/4.
    eps=0.1: pair 2 becomes T_hm -> (1 + 1)/4 = 0.5.
    eps=0.5: pairs 1, 2 T_hm -> (1 + 2)/4 = 0.75.
    eps=1:   pair 3 becomes T_m (was D) -> still 3/4;  eps=2: pair 0 T_m -> 2/4.
    Best 0.75, smallest eps reaching it 0.5."""
    acc, eps = pairwise_accuracy_with_ties([2.0, 0.5, -0.1, 1.0], [1, 0, 0, -1])
    assert acc == pytest.approx(0.75)
    assert eps == pytest.approx(0.5)


def test_ties_no_human_ties_keeps_eps_zero():
    """All human labels decided, diffs all correct-signed: eps = 0 gives C = 3 -> 1.0."""
    assert pairwise_accuracy_with_ties(torch.tensor([0.3, -2.0, 1.0]), torch.tensor([1, -1, 1])) == (1.0, 0.0)


def test_ties_all_human_ties():
    """All human ties: eps = max |diff| = 3 makes every pair T_hm -> 1.0."""
    assert pairwise_accuracy_with_ties([1.0, -3.0, 0.0], [0, 0, 0]) == (1.0, 3.0)


def test_zero_diff_is_a_model_tie_at_eps_zero():
    """diff = [0, 0], human = [1, 0]: at eps = 0 both are model ties: pair 0 T_m, pair 1 T_hm -> 1/2."""
    assert pairwise_accuracy_with_ties([0.0, 0.0], [1, 0]) == (0.5, 0.0)


@pytest.mark.parametrize("seed", range(30))
def test_ties_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    kind = seed % 3
    if kind == 0:      # continuous diffs
        diff = rng.normal(size=n)
    elif kind == 1:    # integer-valued diffs with many duplicates (and exact zeros)
        diff = rng.integers(-3, 4, size=n).astype(float)
    else:              # rounded diffs
        diff = np.round(rng.normal(size=n), 1)
    label = rng.choice([-1, 0, 1], size=n, p=[0.4, 0.2, 0.4])
    acc, eps = pairwise_accuracy_with_ties(diff, label)
    ref_acc, ref_eps = _brute_force_ties(diff, label)
    assert acc == pytest.approx(ref_acc)
    assert eps == pytest.approx(ref_eps)


def test_pairwise_accuracy_by_hand():
    """Human ties dropped: pairs (2, +1) right, (-1, +1) wrong, (0, -1) wrong (zero diff counts wrong),
    (-4, -1) right -> 2/4 = 0.5."""
    assert pairwise_accuracy([2.0, -1.0, 0.0, 5.0, -4.0], [1, 1, -1, 0, -1]) == pytest.approx(0.5)


def test_pairwise_errors():
    with pytest.raises(ValueError, match="empty"):
        pairwise_accuracy([], [])
    with pytest.raises(ValueError, match="empty"):
        pairwise_accuracy_with_ties([], [])
    with pytest.raises(ValueError, match="every pair is a human tie"):
        pairwise_accuracy([1.0], [0])
    with pytest.raises(ValueError, match="3 pairs but human_label has 2"):
        pairwise_accuracy([1.0, 2.0, 3.0], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        pairwise_accuracy_with_ties([float("nan")], [1])


def test_parse_ranking():
    """'C>A>B': C best (level 0), A level 1, B level 2 -> [1, 2, 0]; 'A=B>C' -> [0, 0, 1]."""
    assert parse_ranking("C>A>B") == [1, 2, 0]
    assert parse_ranking("A=B>C") == [0, 0, 1]
    assert parse_ranking("B > A") == [1, 0]


@pytest.mark.parametrize("bad", ["A>A", "A>>B", "A>b", "A>C", "", "AB>C", 3])
def test_parse_ranking_rejects_malformed(bad):
    with pytest.raises(ValueError, match="ranking"):
        parse_ranking(bad, num_candidates=2 if bad == "A>C" else None)


def test_strict_group_accuracy_by_hand():
    """Group 0, 'C>A>B', scores A=0.5, B=0.1, C=0.9: C-A=.4>0, C-B=.8>0, A-B=.4>0 -> right.
    Group 1, 'A=B>C', scores A=1.0, B=1.05, C=0.0: with eps=0 the A=B tie needs |gap| <= 0 -> wrong;
      with eps=0.1: |A-B| = .05 <= .1, A-C = 1 > .1, B-C = 1.05 > .1 -> right.
    Group 2, 'B>A', scores (1, 2): B-A = 1 > 0 -> right (and > 0.1).
    eps=0: 2/3; eps=0.1: 3/3."""
    scores = [[0.5, 0.1, 0.9], torch.tensor([1.0, 1.05, 0.0]), np.array([1.0, 2.0])]
    rankings = ["C>A>B", "A=B>C", "B>A"]
    assert strict_group_accuracy(scores, rankings) == pytest.approx(2 / 3)
    assert strict_group_accuracy(scores, rankings, eps=0.1) == pytest.approx(1.0)
    assert strict_group_accuracy_by_k(scores, rankings) == {2: 1.0, 3: 0.5}


def test_strict_group_one_wrong_pair_fails_the_group():
    """'A>B>C' with scores (3, 1, 2): A>B and A>C right but B>C wrong -> 0."""
    assert strict_group_accuracy([[3.0, 1.0, 2.0]], ["A>B>C"]) == 0.0


def test_strict_group_errors_name_the_ranking():
    with pytest.raises(ValueError, match=r"group 1: ranking 'A>D>B'"):
        strict_group_accuracy([[1, 2], [1, 2, 3]], ["A>B", "A>D>B"])
    with pytest.raises(ValueError, match="no groups"):
        strict_group_accuracy([], [])
    with pytest.raises(ValueError, match="2 score groups but 1 rankings"):
        strict_group_accuracy([[1, 2], [2, 1]], ["A>B"])


def test_spearman_fisher_mean_by_hand():
    """Group 1: perfect order -> r = 1, clipped to 0.999999, z = atanh(0.999999) = 7.25432.
    Group 2: pred (1, 2, 3), human (1, 3, 2): d = (0, 1, 1), r = 1 - 6*2/(3*8) = 0.5, z = 0.549306.
    Group 3: constant prediction -> undefined, skipped.
    mean z = 3.901817; tanh = (1 - e^-7.803634) / (1 + e^-7.803634) = (1 - 4.0834e-4) / (1 + 4.0834e-4) = 0.999184."""
    groups = [([1, 2, 3, 4], [10, 20, 30, 40]), ([1, 2, 3], [1, 3, 2]), ([5, 5, 5], [1, 2, 3])]
    expected = math.tanh((math.atanh(0.999999) + math.atanh(0.5)) / 2)
    assert expected == pytest.approx(0.999184, abs=1e-6)
    assert spearman_fisher_mean(groups) == pytest.approx(expected, rel=1e-12)


def test_spearman_fisher_mean_is_not_the_plain_mean():
    """r = 0.5 and r = -0.5 (pred reversed): z = +-0.5493 -> mean 0 -> 0; r = 0.5 and 0.8: plain mean 0.65,
    Fisher tanh((0.549306 + 1.098612)/2) = tanh(0.823959) = (e^1.647918 - 1)/(e^1.647918 + 1) = 4.19620/6.19620
    = 0.677222 (not 0.65)."""
    g_half = ([1, 2, 3], [1, 3, 2])
    assert spearman_fisher_mean([g_half, ([3, 2, 1], [1, 3, 2])]) == pytest.approx(0.0, abs=1e-12)
    g_08 = ([1, 2, 3, 4], [1, 3, 2, 4])  # d = (0, 1, 1, 0): r = 1 - 6*2/(4*15) = 0.8
    assert spearman_fisher_mean([g_half, g_08]) == pytest.approx(0.677222, abs=1e-5)


def test_spearman_errors():
    with pytest.raises(ValueError, match="undefined in every group"):
        spearman_fisher_mean([([1, 1], [1, 2]), ([1, 2], [3, 3])])
    with pytest.raises(ValueError, match="no groups"):
        spearman_fisher_mean([])
    with pytest.raises(ValueError, match=r"groups\[0\]: 2 predictions but 3"):
        spearman_fisher_mean([([1, 2], [1, 2, 3])])


def test_position_bias_of_a_first_slot_lover():
    """The judge adds +1 to whichever item it sees first: judge(a, b) = a - b + 1.
    pairs (a, b, label): (3, 1, +1), (1, 1.5, -1), (0, 4, -1).
    given:   2+1>0 right; -0.5+1 = 0.5 > 0 but label -1 -> wrong; -4+1 < 0 right -> 2/3.
    swapped: judge(b, a) = b - a + 1: -1 < 0 right (needs -label = -1); 1.5 > 0 right; 5 > 0 right -> 3/3.
    bias = 2/3 - 1 = -1/3; verdicts flip consistently for pairs 0 and 2 only (pair 1: + and +) -> 2/3."""
    pb = position_bias(lambda a, b: a - b + 1, [(3, 1, 1), (1, 1.5, -1), (0, 4, -1)])
    assert pb.accuracy_given == pytest.approx(2 / 3)
    assert pb.accuracy_swapped == pytest.approx(1.0)
    assert pb.bias == pytest.approx(-1 / 3)
    assert pb.consistency == pytest.approx(2 / 3)
    assert set(pb.to_dict()) == {"accuracy_given", "accuracy_swapped", "bias", "consistency"}


def test_position_bias_of_a_fair_judge_is_zero():
    pairs = [(float(a), float(b), np.sign(a - b)) for a, b in [(1, 2), (5, 3), (0, -1), (2, 9)]]
    pb = position_bias(lambda x, y: x - y, pairs)
    assert (pb.accuracy_given, pb.accuracy_swapped, pb.bias, pb.consistency) == (1.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="no pairs"):
        position_bias(lambda x, y: x - y, [])
    with pytest.raises(ValueError, match=r"pairs\[0\]: human tie"):
        position_bias(lambda x, y: x - y, [(1, 1, 0)])
