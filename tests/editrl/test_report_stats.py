"""The report's statistics say what they measure: intervals, verdict words, the best-of-N bound and lcb rule."""

import math

import numpy as np
import pytest

from editrl.report import Estimate, cluster_bootstrap, git_commit, image_tag, png_size, t_interval


def test_t_interval_matches_the_student_t_formula():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and hi - mean == pytest.approx(3.182446 * np.std([1, 2, 3, 4], ddof=1) / 2, rel=1e-5)
    assert math.isnan(t_interval([1.0])[1])


def test_verdict_words_say_not_significant_when_the_interval_holds_the_null():
    assert Estimate("gain", 0.05, -0.01, 0.11).words() == "not significant: the 95% interval includes 0"
    e = Estimate("gain", 0.05, 0.01, 0.09, how="t-interval over 64 tasks")
    assert e.significant and "significant: the 95% interval lies entirely above 0" in e.sentence()
    assert "+0.050 [+0.010, +0.090]" in e.sentence() and "t-interval over 64 tasks" in e.sentence()
    acc = Estimate("accuracy", 0.8, 0.7, 0.9, null=0.5)
    assert acc.significant and acc.interval() == "0.800 [0.700, 0.900]"
    assert "not significant" in Estimate("x", 1.0, math.nan, math.nan).words()


def test_cluster_bootstrap_is_deterministic_and_covers_the_estimate():
    rng = np.random.default_rng(1)
    clusters = [rng.normal(0.3, 1.0, size=5) for _ in range(40)]
    stat = lambda cs: float(np.concatenate(cs).mean())  # noqa: E731
    a, b = cluster_bootstrap(clusters, stat), cluster_bootstrap(clusters, stat)
    assert a == b and a[1] < a[0] < a[2]


def test_git_commit_is_unknown_outside_a_checkout(tmp_path):
    assert git_commit(tmp_path) == "unknown"


def test_small_images_are_upscaled_in_the_file_and_figures_capped_at_the_page_width():
    from PIL import Image

    from editrl.report import pil_png

    tag = image_tag(pil_png(Image.new("RGB", (32, 20), "red")), min_px=128)
    assert 'class="pixels"' in tag and 'width="224" height="140"' in tag  # factor 7 = ceil(128 / 20)
    wide = image_tag(pil_png(Image.new("RGB", (2120, 400), "white")))
    assert 'width="1060" height="200"' in wide and "pixels" not in wide
    assert png_size(pil_png(Image.new("RGB", (5, 7)))) == (5, 7)


def _sweep(tasks, ns=(1, 2, 4), sigma=0.0):
    return {"ns": list(ns), "k": 1.0, "results": {str(n): {"aggregate": {}, "lcb": {}} for n in ns},
            "per_task": [{"reward": r, "reward_sigma": [sigma * (i % 2) for i in range(len(r))], "oracle": o}
                         for r, o in tasks]}


def test_best_of_n_bound_is_chosen_on_the_plotted_quantity_and_never_exceeded():
    from editrl.demo import best_of_n_analysis

    # candidate 0: IF 4, VQ 1 (mean 2.5); candidate 1: IF 1, VQ 3.8 (mean 2.4). The reward picks candidate 0, so the
    # bound on IF must be 4 (not the IF of the mean-best), and the bound on VQ 3.8.
    o = [{"instruction_following": 4.0, "visual_quality": 1.0}, {"instruction_following": 1.0, "visual_quality": 3.8}]
    an = best_of_n_analysis(_sweep([([1.0, 0.0], o)] * 3, ns=(1, 2)))
    for q in ("instruction_following", "visual_quality", "mean"):
        for rule in ("aggregate", "random"):
            assert all(b >= x - 1e-12 for b, x in zip(an["curves"]["oracle_best"][q], an["curves"][rule][q])), q
    assert an["curves"]["oracle_best"]["visual_quality"][1] == pytest.approx(3.8)


def test_lcb_is_shown_only_when_it_picks_differently_from_aggregate():
    from editrl.demo import best_of_n_analysis

    rng = np.random.default_rng(0)
    tasks = [(list(rng.normal(size=4)), [{"instruction_following": float(rng.uniform(1, 4)),
                                          "visual_quality": float(rng.uniform(1, 4))} for _ in range(4)])
             for _ in range(10)]
    flat = best_of_n_analysis(_sweep(tasks, sigma=1e-6))
    assert not flat["show_lcb"] and flat["lcb_differing"] == 0
    informative = best_of_n_analysis(_sweep(tasks, sigma=5.0))
    assert informative["show_lcb"] and informative["lcb_differing"] > 0
    gain = informative["gains"]["aggregate"][-1]
    assert gain.label.startswith("N = 4") and "t-interval over 10 tasks" in gain.how
