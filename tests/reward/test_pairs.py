"""Tie disentanglement (paper eq. 6), worked by hand."""

import pytest

from reward.train.pairs import disentangle_ties, is_disentanglable, overall_tie


def test_disentangle_ties_by_hand():
    """scores (instruction following, visual quality):
    p1: A (4, 2) vs B (3, 2): sums 6 vs 5 -> one sample (A, B)
    p2: C (2, 2) vs D (3, 3): sums 4 vs 6 -> one sample (D, C), winner first
    p3: E (4, 1) vs F (2, 3): sums 5 = 5, E wins dim 1, F wins dim 2 -> (E, F) and (F, E)
    p4: G (2, 2) vs H (2, 2): plain tie, no dimensional disagreement -> dropped
    """
    pairs = [("A", "B", (4, 2), (3, 2)), ("C", "D", (2, 2), (3, 3)), ("E", "F", (4, 1), (2, 3)),
             ("G", "H", (2, 2), (2, 2))]
    assert disentangle_ties(pairs) == [("A", "B"), ("D", "C"), ("E", "F"), ("F", "E")]


def test_predicates():
    assert overall_tie((1.5, 2.5), (3.0, 1.0)) and is_disentanglable((1.5, 2.5), (3.0, 1.0))
    assert not is_disentanglable((3, 1), (3, 1))           # tie, but no dimension differs
    assert not is_disentanglable((4, 1), (2, 2))           # dimensions disagree, but not tied overall
    assert not is_disentanglable((2,), (2,))               # one dimension cannot disagree


def test_each_disentangled_tie_gives_both_labels_and_others_one():
    """Counting rule: n_strict + 2 * n_disentanglable samples; every disentangled pair appears both ways."""
    pairs = [(i, i + 100, (i % 4, 3 - i % 4), ((i + 1) % 4, 3 - (i + 1) % 4)) for i in range(12)]
    out = disentangle_ties(pairs)
    assert len(out) == 2 * 12  # every pair ties at 3 and its dimensions disagree
    assert all((b, a) in out for a, b in out)


def test_bad_input():
    with pytest.raises(ValueError, match="pair 0"):
        disentangle_ties([("a", "b", (1, 2), (1,))])
    with pytest.raises(ValueError, match="expected"):
        disentangle_ties([("a", "b", (1, 2))])
