"""Analysis of batch-size scaling studies: pure functions over numbers.

Everything here takes plain sequences (batch sizes, steps-to-target, tuned learning
rates), so it works on any study's results and on published tables typed in by hand:

* :func:`fit_scaling` — S(B) = S_min (1 + B_crit / B) (McCandlish et al. 2018), robust,
  with bootstrap intervals;
* :func:`fit_knee` — the same asymptotes with a bend of free sharpness,
  S_min (1 + (B_crit / B)^α)^(1/α), for rungs that bend unlike the hyperbola;
* :func:`scaling_regimes` — perfect scaling, diminishing returns, maximal data
  parallelism (Shallue et al. 2018), from the fit and from the data alone;
* :func:`lr_trend` — the tuned learning rate's exponent against the linear and √ rules;
* :func:`hparam_trends` — every tuned hyperparameter (η, β2, λ) against B, with the
  exponent's interval and each transfer rule's prediction error;
* :func:`compare_prediction` — measured B_crit against the noise scale B_simple;
* :func:`compare_fits` — two curves (e.g. SGD against momentum) as ratios;
* :func:`interval_ratio` — a ratio of two estimates from their intervals (MOVER);
* :func:`fit_power_law` — a quantity across studies (B_crit against data seen or model
  size) as a power law, with the exponent's interval;
* :func:`summarize_ladder` — all of the above for one ladder, plus the answer
  (:func:`batch_size_answer`, :func:`lr_at`) and what sets B_crit's interval
  (:func:`explain_interval`): what every consumer calls;
* :func:`best_steps_per_batch_size`, :func:`best_run_per_batch_size` — steps-to-result
  from a table of runs, and which run set it; :func:`median_steps`,
  :func:`confirmed_candidate` — the same after the best candidates ran on fresh seeds,
  and :func:`median_interval` — how well the seeds pin that median down.

Every result is a frozen dataclass with a JSON-safe ``to_dict()``.
"""

from ._answer import (
    BatchSizeAnswer,
    LearningRateAt,
    RungCost,
    batch_size_answer,
    lr_at,
    rung_steps_interval,
)
from ._checks import AnalysisError
from ._compare import (
    FitComparison,
    PredictionComparison,
    compare_fits,
    compare_prediction,
    interval_ratio,
)
from ._fit import ScalingFit, fit_scaling
from ._hparam_trends import (
    TREND_HPARAMS,
    ExponentFit,
    HparamTrend,
    HparamTrends,
    RulePrediction,
    hparam_trends,
)
from ._interval_sources import IntervalSources, explain_interval
from ._knee import KneeFit, fit_knee
from ._lr_trend import LR_RULES, LRTrend, lr_trend
from ._power_law import PowerLawFit, fit_power_law
from ._regimes import PairReading, RegimeBoundaries, ScalingRegimes, scaling_regimes
from ._rule_costs import RuleCost, rule_costs
from ._search_gap import search_gap
from ._seed_bootstrap import SeedBootstrap, seed_bootstrap
from ._steps_to_result import (
    best_run_per_batch_size,
    best_steps_per_batch_size,
    confirmed_candidate,
    median_interval,
    median_steps,
)
from ._summary import MIN_RUNGS_FOR_FIT, LadderSummary, summarize_ladder

__all__ = [
    "PowerLawFit",
    "fit_power_law",
    "BatchSizeAnswer",
    "LearningRateAt",
    "RungCost",
    "rung_steps_interval",
    "search_gap",
    "IntervalSources",
    "explain_interval",
    "KneeFit",
    "fit_knee",
    "batch_size_answer",
    "lr_at",
    "AnalysisError",
    "LadderSummary",
    "MIN_RUNGS_FOR_FIT",
    "best_run_per_batch_size",
    "confirmed_candidate",
    "best_steps_per_batch_size",
    "summarize_ladder",
    "FitComparison",
    "LRTrend",
    "ExponentFit",
    "HparamTrend",
    "HparamTrends",
    "RulePrediction",
    "TREND_HPARAMS",
    "hparam_trends",
    "LR_RULES",
    "PairReading",
    "PredictionComparison",
    "RegimeBoundaries",
    "ScalingFit",
    "SeedBootstrap",
    "seed_bootstrap",
    "RuleCost",
    "rule_costs",
    "ScalingRegimes",
    "compare_fits",
    "compare_prediction",
    "interval_ratio",
    "fit_scaling",
    "median_interval",
    "median_steps",
    "lr_trend",
    "scaling_regimes",
]
