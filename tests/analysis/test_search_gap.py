"""search_gap: a bound on how far the best sampled point lies above the range's optimum.

Ground truth from closed forms: on a V-shaped log S(x) the secants are the V's own
slopes, so the bound is exact arithmetic; on random convex curves (the assumption it
states) it must never fall below the true gap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchlab.analysis import rung_steps_interval, search_gap


def v_shape(x: float, centre: float = 0.3, slope: float = 2.0) -> float:
    return 1.0 + slope * abs(x - centre)


def test_v_shape_bound_is_the_slope_times_the_bracket():
    xs = [-2.0, -1.0, 0.0, 1.0, 2.0]
    points = [(x, v_shape(x)) for x in xs]
    # Best at 0 (y = 1.6), bracket (−1, 1). Left secant: (v(−1) − v(0)) / 1 = 2; right
    # secant from x = 1 (y = 2.4): (2.4 − 1.6) / 1 = 0.8. Right of the best the left
    # secant bounds: 2 · 1; left of it the right secant: 0.8 · 1.
    gap = search_gap(points, 0.0, (-3.0, 3.0))
    assert gap == pytest.approx(2.0)
    true_gap = v_shape(0.0) - v_shape(0.3)
    assert gap >= true_gap


def test_unreached_neighbours_bracket_but_give_no_slope():
    # The points right of the best never reached the target: the optimum lies in
    # (−1, 0.5); the right side borrows the left secant.
    points = [(-2.0, 3.0), (-1.0, 2.0), (0.0, 1.0), (0.5, None), (1.0, None)]
    gap = search_gap(points, 0.0, (-3.0, 3.0))
    # left secant (2 − 1) / 1 = 1; right bracket 0.5 → 1 · 0.5; left bracket 1 → 1 · 1.
    assert gap == pytest.approx(1.0)


def test_a_best_on_the_edge_is_bracketed_by_the_end_of_the_range():
    points = [(-1.0, 2.0), (0.0, 1.5)]
    # Nothing sampled right of the best: the optimum may lie up to the range's end,
    # 0.25 away (bound 0.5 · 0.25); left of it, in (−1, 0), with the left secant
    # borrowed (no reached point on the right): 0.5 · 1.
    assert search_gap(points, 0.0, (-1.0, 0.25)) == pytest.approx(0.5)
    # A secant 0.1 long is not extended over 0.25 (unknown) where the seeds' noise is
    # unknown, or not below half its rise (0.5); on a noiseless workload it is: 5 · 0.25.
    points = [(-0.1, 2.0), (0.0, 1.5)]
    assert search_gap(points, 0.0, (-1.0, 0.25)) is None
    assert search_gap(points, 0.0, (-1.0, 0.25), noise=0.25) is None
    assert search_gap(points, 0.0, (-1.0, 0.25), noise=0.0) == pytest.approx(1.25)
    assert search_gap(points, 0.0, (-1.0, 0.25), noise=0.2) == pytest.approx(1.25)


def test_with_no_secant_long_enough_the_longest_measured_one_is_extended():
    # What a refinement window stretched beyond the range's edge leaves (NQM, B = 256,
    # calibration seed 2): reached neighbours 0.13 and 0.5 left of the best, and right
    # of it only a point that never reached the target, 0.6 away. On the convex
    # f(x) = 4 (x − 0.3)², neither left secant is 0.6 long; the longest one, from −0.5
    # (slope (2.56 − 0.36) / 0.5 = 4.4), is extended over the 0.6.
    def f(x):
        return 4 * (x - 0.3) ** 2

    points = [(-0.5, f(-0.5)), (-0.13, f(-0.13)), (0.0, f(0.0)), (0.6, None)]
    gap = search_gap(points, 0.0, (-1.0, 1.0), noise=0.0)
    assert gap == pytest.approx(4.4 * 0.6)
    assert gap >= f(0.0) - f(0.3)  # the true gap: the optimum is at 0.3
    # Noise of 0.3 leaves only the secant from −0.5 (rise 2.2; the one from −0.13 rises
    # 0.38 < 0.6); noise of 1.2 neither: unknown, as without a noise.
    assert search_gap(points, 0.0, (-1.0, 1.0), noise=0.3) == pytest.approx(4.4 * 0.6)
    assert search_gap(points, 0.0, (-1.0, 1.0), noise=1.2) is None
    assert search_gap(points, 0.0, (-1.0, 1.0)) is None


def test_a_noisy_near_neighbour_does_not_steepen_the_bound():
    # A measured curve: the neighbour at −0.05 took far more steps than its place on the
    # curve (seed noise). The flattest left secant is the one from −1: (1.2 − 1) / 1.
    points = [(-1.0, 1.2), (-0.05, 2.0), (0.0, 1.0), (1.0, 1.2)]
    assert search_gap(points, 0.0, (-2.0, 2.0)) == pytest.approx(0.2)


def test_no_slope_means_unknown():
    assert search_gap([(0.0, 1.0), (1.0, None)], 0.0, (-1.0, 1.0)) is None


def test_repeats_keep_the_smallest_value():
    points = [(-1.0, 2.0), (-1.0, 1.8), (0.0, 1.0), (1.0, 2.0)]
    assert search_gap(points, 0.0, (-2.0, 2.0)) == pytest.approx(1.0)


def test_never_below_the_true_gap_on_random_convex_curves():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(500):
        centre, curvature, slope = rng.uniform(-1, 1), rng.uniform(0.1, 5), rng.uniform(0, 2)

        # convex: a parabola plus a one-sided linear wall (the edge of stability)
        def f(x, c=centre, k=curvature, s=slope):
            return k * (x - c) ** 2 + s * max(x - c, 0.0)

        xs = rng.uniform(-2, 2, size=rng.integers(3, 12))
        best = min(xs, key=f)
        if best in (xs.min(), xs.max()):
            continue  # a side borrows a secant: a stated assumption, not a bound
        # Noiseless: where no secant is long enough, the longest from the other side is
        # extended, so with reached points on both sides the gap is known, and a bound.
        gap = search_gap([(x, f(x)) for x in xs], best, (-2.0, 2.0), noise=0.0)
        assert gap is not None
        checked += 1
        # the true optimum over [-2, 2] is f(centre) = 0
        assert gap >= f(best) - 1e-12
    assert checked > 300


@pytest.mark.parametrize(
    ("points", "best", "bounds", "match"),
    [
        ([(0.0, None), (1.0, 2.0)], 0.0, (-1.0, 1.0), "reached"),
        ([(0.0, 1.0), (1.0, 2.0)], 0.5, (-1.0, 1.0), "reached"),
        ([(0.0, 1.0), (1.0, 2.0)], 0.0, (0.5, 1.0), "bounds"),
    ],
)
def test_bad_input_names_the_argument(points, best, bounds, match):
    with pytest.raises(ValueError, match=match):
        search_gap(points, best, bounds)


def test_the_floor_extends_a_rung_interval_downwards_only():
    # seeds [95, 110], resolution 4: low 91; a floor of 80 lowers it, one of 95 does not.
    assert rung_steps_interval(100.0, (95.0, 110.0), 4.0, 80.0) == (80.0, 110.0)
    assert rung_steps_interval(100.0, (95.0, 110.0), 4.0, 95.0) == (91.0, 110.0)
    assert rung_steps_interval(100.0, None, None, None) == (100.0, 100.0)
    assert rung_steps_interval(100.0, None, None, math.exp(-0.1) * 100) == pytest.approx(
        (100 * math.exp(-0.1), 100.0)
    )
