"""reports/inference.py: both variances in one interval, by hand, against statsmodels, and as
properties (pseudo-values, power round trips, the seeds a power target needs)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reports.inference import (
    Components,
    between_rows,
    components,
    detectable,
    estimate,
    own_seeds,
    power,
    pseudo_values,
    seeds_needed,
    within_rows,
)


def test_pseudo_values_average_to_the_ratio_of_totals():
    rng = np.random.default_rng(0)
    num, den = rng.uniform(0, 50, (4, 30)), rng.integers(1, 9, (4, 30)).astype(float)
    z = pseudo_values(num, den)
    assert np.allclose(z.mean(-1), num.sum(-1) / den.sum(-1))
    # a mean over units (den = the units): a video twice the size pulls twice as hard
    assert np.allclose(pseudo_values(np.array([2.0, 6.0]), np.array([1.0, 3.0])), [2.0, 2.0])


def test_interval_of_a_hand_computed_two_seed_three_video_table():
    # D (seeds x videos) = [[1, 2, 6], [3, 2, 10]]: grand mean 4, seed means 3 / 5, video means 2 / 2 / 8.
    # MS_video = S * sum((2-4)^2 + (2-4)^2 + (8-4)^2) / (V-1) = 2 * 24 / 2 = 24.
    # residuals D - seed - video + grand = [[0, 1, -1], [0, -1, 1]]: MS_resid = 4 / ((S-1)(V-1)) = 2.
    # own seed variance: var(3, 5) = 2 with 1 df -> seed term 2 / S = 1.
    # video term (24 - 2) / (S V) = 22 / 6; se^2 = 1 + 22/6.
    # Satterthwaite: (1 + 24/6 - 2/6)^2 / (1^2/1 + (24/6)^2/2 + (2/6)^2/2).
    d = np.array([[1.0, 2.0, 6.0], [3.0, 2.0, 10.0]])
    e = estimate(d, own_seeds(d.mean(-1)), 0.95)
    se2 = 1 + 22 / 6
    df = se2**2 / (1 + (24 / 6) ** 2 / 2 + (2 / 6) ** 2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(se2)
    assert e.value == 4.0 and e.seed_term == pytest.approx(1.0) and e.video_term == pytest.approx(22 / 6)
    assert (
        e.se == pytest.approx(math.sqrt(se2)) and e.df == pytest.approx(df) and df == pytest.approx(2.40491, abs=1e-5)
    )
    assert (e.lo, e.hi) == (pytest.approx(4 - half), pytest.approx(4 + half))
    assert e.p == pytest.approx(2 * stats.t.sf(4 / math.sqrt(se2), df))


def test_the_video_term_is_clipped_when_videos_agree_more_than_chance():
    # every video the same after the seed effect: MS_video 0 < MS_resid -> only the seed term, its df
    d = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 3.0]])
    e = estimate(d, own_seeds(d.mean(-1)), 0.95)
    assert e.video_term == 0 and e.df == 1 and e.se == pytest.approx(math.sqrt(d.mean(-1).var(ddof=1) / 2))


def test_one_seed_borrows_the_seed_variance_and_keeps_the_residual_in_the_video_term():
    d = np.array([[1.0, 3.0, 5.0, 7.0]])  # MS_video = var = 20/3 with S = 1
    e = estimate(d, between_rows(np.array([[0.0, 1.0], [1.0, 0.0]])), 0.95)  # 2 * MS_int = 2 * 1 / 1
    assert e.seed_term == pytest.approx(2.0) and e.video_term == pytest.approx((20 / 3) / 4)


def test_pooled_seed_variance_of_two_rows_is_the_variance_of_their_difference():
    y = np.array([[30.0, 31.0, 29.5], [33.0, 34.5, 32.0]])
    b = between_rows(y)
    assert b.var == pytest.approx(np.var(y[1] - y[0], ddof=1)) and b.df == 2


def test_within_rows_df_fall_to_seeds_minus_one_when_the_seeds_move_every_row_alike():
    common = np.array([0.0, 5.0, -5.0])
    alike = within_rows(np.stack([common + r for r in range(5)]))  # no row x seed interaction
    assert alike.df == pytest.approx(2) and alike.var == pytest.approx(25.0)
    rng = np.random.default_rng(1)
    apart = within_rows(rng.normal(0, 1, (5, 3)) - rng.normal(0, 1, (5, 3)).mean(0))  # no common seed effect
    assert 2 < apart.df <= 10


def test_components_equal_statsmodels_reml_on_a_balanced_crossed_table():
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(3)
    s, v = 6, 12
    d = 1.0 + rng.normal(0, 2, (s, 1)) + rng.normal(0, 3, (1, v)) + rng.normal(0, 1, (s, v))
    ours = components(d, own_seeds(d.mean(-1)))
    frame = pd.DataFrame(
        {"y": d.ravel(), "seed": np.repeat(np.arange(s), v), "video": np.tile(np.arange(v), s), "g": 1}
    )
    fit = smf.mixedlm(
        "y ~ 1", frame, groups="g", re_formula="0", vc_formula={"seed": "0 + C(seed)", "video": "0 + C(video)"}
    ).fit(reml=True)
    seed_vc, video_vc = fit.vcomp  # in vc_formula's name order: seed, video
    assert min(ours.seed, ours.video) > 0  # REML equals the ANOVA estimators only where these are positive
    assert ours.seed == pytest.approx(seed_vc, rel=1e-3)
    assert ours.video == pytest.approx(video_vc, rel=1e-3)
    assert ours.resid == pytest.approx(fit.scale, rel=1e-3)


def test_detectable_difference_has_the_power_it_claims():
    se, df = np.array([0.5, 1.0, 2.0]), np.array([3.0, 8.0, 200.0])
    d = detectable(se, df, 0.05, 0.8)
    assert np.allclose(power(d, se, df, 0.05), 0.8, atol=1e-6)
    # many df: the normal approximation (z_0.975 + z_0.8) * se
    assert d[2] == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * 2.0, rel=0.01)
    assert detectable(1.0, 8.0, 0.01) > detectable(1.0, 8.0, 0.05)  # a stricter level needs more


def test_seeds_needed_grow_with_a_smaller_target_and_stop_where_the_test_set_is_the_limit():
    c = Components(seed=4.0, video=2.0, resid=50.0)
    small, large = (seeds_needed(d, c, videos=200, rows=5, alpha=0.01) for d in (1.0, 3.0))
    assert small is not None and large is not None and small > large >= 2
    video_bound = Components(seed=0.0, video=400.0, resid=0.0)  # se >= sqrt(400 / 20) whatever the seeds
    assert seeds_needed(1.0, video_bound, videos=20, rows=5, alpha=0.01) is None
