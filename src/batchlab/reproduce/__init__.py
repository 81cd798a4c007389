"""Reproduce seven findings on batch-size scaling and write them up from measurements.

``batchlab reproduce`` (or :func:`reproduce`) runs the studies of a plan
(``examples/findings/full`` or ``.../quick``) with the ordinary study engine, adds the
runs that are not studies (fixed-epoch budgets; the noise scale during training),
evaluates each finding into measured numbers and a verdict with its criterion, and
writes ``findings.md`` with figures plus a combined HTML report. No number in the
document is typed by hand.

1. Three regimes, and where they lie depends on the model (Shallue et al. 2018).
2. Momentum extends perfect scaling (Shallue et al. 2018).
3. The linear and square-root LR rules break beyond perfect scaling (Shallue et al. 2018).
4. Data-set size matters little (Shallue et al. 2018).
5. "Batch ≤ 32" is an effect of fixed-epoch budgets (Masters & Luschi 2018; Shallue et al.).
6. The noise scale predicts the critical batch size (McCandlish et al. 2018).
7. LARS/LAMB against momentum at the largest batch sizes (You et al. 2017, 2019).
"""

from ._curves import Curve, FindingsError, curve_from_results, load_curve
from ._document import RunInfo, render_document, write_document
from ._evaluate import (
    DatasetSizeFinding,
    Findings,
    FixedEpochsFinding,
    LargeBatchFinding,
    LRFinding,
    MomentumFinding,
    NoiseFinding,
    RegimesFinding,
    evaluate_all,
    evaluate_dataset_size,
    evaluate_fixed_epochs,
    evaluate_large_batch,
    evaluate_lr_rules,
    evaluate_momentum,
    evaluate_noise_scale,
    evaluate_regimes,
)
from ._fits import FitSummary, Ratio, Verdict, fmt, fmt_ci, fmt_signed
from ._fixed_budget import run_budget_job
from ._noise_runs import run_noise_job
from ._plan import Plan, default_plan_dir, load_plan
from ._reproduce import Reproduction, reproduce
from ._run import Measurements, StageProgress, run_plan

__all__ = [
    "Curve",
    "DatasetSizeFinding",
    "Findings",
    "FindingsError",
    "FitSummary",
    "FixedEpochsFinding",
    "LRFinding",
    "LargeBatchFinding",
    "Measurements",
    "MomentumFinding",
    "NoiseFinding",
    "Plan",
    "Ratio",
    "RegimesFinding",
    "Reproduction",
    "RunInfo",
    "StageProgress",
    "Verdict",
    "curve_from_results",
    "default_plan_dir",
    "evaluate_all",
    "evaluate_dataset_size",
    "evaluate_fixed_epochs",
    "evaluate_large_batch",
    "evaluate_lr_rules",
    "evaluate_momentum",
    "evaluate_noise_scale",
    "evaluate_regimes",
    "fmt",
    "fmt_ci",
    "fmt_signed",
    "load_curve",
    "load_plan",
    "render_document",
    "reproduce",
    "run_budget_job",
    "run_noise_job",
    "run_plan",
    "write_document",
]
