"""The fit and regimes on the exact S(B) of the noisy quadratic model.

Plain SGD on the NQM (``batchlab.get_workload("nqm")``) has an exact expected loss:
per coordinate the second moment p = E w² obeys p' = (1 − ηh)² p + η² (c h)/B
(``nqm.iter_nqm_expected_loss``), so p_t = (1 − ηh)^(2t) (p₀ − p*) + p* with
p* = η c/(B (2 − ηh)). That closed form lets the test scan a fine grid of learning
rates per batch size at once; every optimum is then checked against the workload's
own recurrence. Reference values (dim = 1000, noise_scale = 1, w₀ = 1, target
loss ≤ 0.5, optimal constant LR per B):

    B:     1     2     4    8    16   32   64  128  256  512  1024  2048  4096  8192
    S(B): 1966  1002  521  285  174  123  99   86   79   75   72    70    69    69
    S_min (B = 10¹², noiseless, own optimal LR ≈ 1.95):  68 steps
    E_min (B·S(B) at B = 10⁻⁴, LR ≈ 1.5e-5):             ≈ 1931 examples
    fit: S_min ≈ 69.8, E_min ≈ 1813, B_crit ≈ 26.0; log residuals within ±0.051.

The NQM is not exactly S_min (1 + B_crit/B): the hyperbola comes from a one-step
analysis with an unconstrained optimal step (McCandlish et al. 2018, Sec. 2.2),
while here many coordinates converge at different rates and the optimal LR runs into
the stability limit 2/h_max = 2 at large B. The exact curve's residuals from the fit
swing +4%, −5%, +3%, −2% along the ladder; the tolerances below follow from that
misfit ε = max |residual|.
"""

import math

import numpy as np
import pytest

from batchlab import get_workload
from batchlab.analysis import fit_scaling, scaling_regimes
from batchlab.workloads.nqm import sgd_steps_to_target

# dim 1000 rather than the default 10⁴: the same curve shape, ten times faster.
WORKLOAD_PARAMS = {"dim": 1000}
LADDER = [2**k for k in range(14)]
TOL = 0.25


def steps_to_target(workload, lrs, batch_size, target):
    """First step with expected loss <= target, for each LR (inf if never), SGD closed form."""
    return sgd_steps_to_target(
        workload.curvature,
        workload.noise,
        workload.w0,
        lrs=lrs,
        batch_size=batch_size,
        target=target,
    )


def optimal_steps(workload, batch_size, target):
    """(best LR, fewest steps) over a log grid of LRs below the stability limit 2/h_max = 2."""
    coarse = np.geomspace(1e-6, 1.999, 60)
    k = int(np.argmin(steps_to_target(workload, coarse, batch_size, target)))
    fine = np.geomspace(coarse[max(k - 1, 0)], coarse[min(k + 1, coarse.size - 1)], 60)
    counts = steps_to_target(workload, fine, batch_size, target)
    j = int(np.argmin(counts))
    return float(fine[j]), float(counts[j])


@pytest.fixture(scope="module")
def nqm_curve():
    workload = get_workload("nqm", WORKLOAD_PARAMS)
    target = workload.target.value
    best = [optimal_steps(workload, float(b), target) for b in LADDER]
    lrs, steps = [lr for lr, _ in best], [s for _, s in best]
    # Ground truth through the workload's own recurrence, evaluated at every step:
    # steps-to-target (first step with loss <= target) is the step found.
    for b, lr, s in zip(LADDER, lrs, steps, strict=True):
        curve = [m["loss"] for m in workload.iter_exact_metrics({"lr": lr}, b, range(int(s) + 1))]
        assert min(t for t, loss in enumerate(curve) if loss <= target) == s, b
    s_min = optimal_steps(workload, 1e12, target)[1]  # B → ∞: noiseless gradient descent
    tiny = 1e-4  # B → 0: B·S(B) converges to E_min with corrections O(B/B_crit) ~ 1e-5
    e_min = tiny * optimal_steps(workload, tiny, target)[1]
    return steps, s_min, e_min


def test_nqm_exact_curve_references(nqm_curve):
    steps, s_min, e_min = nqm_curve
    assert steps[0] == 1966 and steps[-1] == 69
    assert s_min == 68
    assert e_min == pytest.approx(1931, rel=1e-3)
    # The definitions themselves: S(B) ≥ S_min and B·S(B) ≥ E_min on every rung.
    assert all(s >= s_min for s in steps)
    assert all(b * s >= e_min for b, s in zip(LADDER, steps, strict=True))


def test_fit_of_the_nqm_curve_matches_its_asymptotes(nqm_curve):
    steps, s_min, e_min = nqm_curve
    fit = fit_scaling(LADDER, steps)
    eps = max(abs(r) for r in fit.residuals)
    # The hyperbola describes the NQM to within a few percent everywhere on the ladder.
    assert eps < 0.07
    # S_min is pinned by the large-B rungs, which are within ε of the fitted curve
    # and themselves within 1–2% of the asymptote: |log(S_min,fit / S_min)| <= ε.
    assert abs(math.log(fit.s_min / s_min)) <= eps
    # E_min is an extrapolation B → 0 beyond the smallest rung, where the fitted and
    # exact curves approach their limits at different rates (the exact one is 1.8%
    # above its limit at B = 1): allow twice the misfit, 2ε.
    assert abs(math.log(fit.e_min / e_min)) <= 2 * eps
    # And B_crit = E_min / S_min inherits both errors.
    assert abs(math.log(fit.b_crit / (e_min / s_min))) <= 3 * eps


def test_regimes_of_the_nqm_curve_match_the_definitions_away_from_the_bends(nqm_curve):
    steps, s_min, e_min = nqm_curve
    regimes = scaling_regimes(LADDER, steps, tol=TOL)
    fit = regimes.fit
    # Regimes by the definitions applied to the exact curve and its exact limits.
    exact = {}
    for b, s in zip(LADDER, steps, strict=True):
        if b * s <= (1 + TOL) * e_min:
            exact[b] = "perfect"
        elif s <= (1 + TOL) * s_min:
            exact[b] = "maximal"
        else:
            exact[b] = "diminishing"
    assert [b for b in LADDER if exact[b] == "perfect"] == [1, 2, 4, 8]
    assert [b for b in LADDER if exact[b] == "maximal"][0] == 256
    # Where the exact curve crosses the thresholds (log-interpolated between rungs).
    e_curve = np.log([b * s / e_min for b, s in zip(LADDER, steps, strict=True)])
    s_curve = np.log([s / s_min for s in steps])
    log_b = np.log(LADDER)
    perfect_end = math.exp(np.interp(math.log(1 + TOL), e_curve, log_b))
    maximal_start = math.exp(np.interp(-math.log(1 + TOL), -s_curve, log_b))
    # Near a bend the regime criterion changes by tol/(1+tol) in log per unit log B
    # (d log(1 + B/B_crit)/d log B at B = tol·B_crit, and the same for S at B_crit/tol),
    # so an error δ in log E/E_min (or log S/S_min) moves a bend by δ(1+tol)/tol in
    # log B. δ is at most the fit's misfit plus the error of its asymptote.
    eps = max(abs(r) for r in fit.residuals)
    slack_perfect = (eps + abs(math.log(fit.e_min / e_min))) * (1 + TOL) / TOL
    slack_maximal = (eps + abs(math.log(fit.s_min / s_min))) * (1 + TOL) / TOL
    assert abs(math.log(regimes.boundaries.perfect_end / perfect_end)) <= slack_perfect
    assert abs(math.log(regimes.boundaries.maximal_start / maximal_start)) <= slack_maximal
    # Every rung farther than that from both bends is classified as the definitions say.
    for b in LADDER:
        near = (
            abs(math.log(b / perfect_end)) <= slack_perfect
            or abs(math.log(b / maximal_start)) <= slack_maximal
        )
        if not near:
            assert regimes.regime_of(b) == exact[b], b
    # The exact NQM curve falls monotonically with a decreasing slope, like the model,
    # so the data-only reading does not contradict the fitted regimes.
    assert regimes.disagreements == []
