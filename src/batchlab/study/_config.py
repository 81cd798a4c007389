"""The study configuration: a pydantic model loaded from TOML.

Every field is validated where it is read (``extra="forbid"``: a typo is an error,
not a silent default), and cross-field checks that need the workload (does it
report the target metric? is the largest rung within its training set?) run in
:func:`validate_against_workload`. This is a study's boundary: below it (plan,
workers, trials) the values are trusted and not checked again. The search space's
ranges are :mod:`batchlab.study._space`. (About 400 lines: it is the whole schema,
which reads best top to bottom in one place.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import tomllib
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from .._device import Precision
from .._errors import ConfigError
from .._secrets import redact_url
from ..optim import LR_RULES, NOISE_SCALE_LR_RULES, OPTIMIZER_HPARAMS, OPTIMIZERS
from ..training import has_exact_curves
from ..workloads import BUILTIN_WORKLOADS, Target, Workload
from ._space import ONE_MINUS, SCHEDULE_PARAMS, ParamRange, default_search_space

Sampler = Literal["sobol", "random", "tpe"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkloadConfig(_Strict):
    """Which workload, and the parameters it is built with."""

    name: str = Field(min_length=1, description="Built-in name or module:function.")
    params: dict[str, Any] = Field(default_factory=dict)
    path: list[str] = Field(
        default_factory=list,
        description=(
            "Directories to import a module:function workload from, before the current "
            "directory and sys.path; relative to the config file, whose own directory "
            "is always added last."
        ),
    )

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in BUILTIN_WORKLOADS and ":" not in name:
            raise ValueError(
                f"unknown workload {name!r}; built-in workloads are "
                f"{', '.join(BUILTIN_WORKLOADS)} (or 'module:function')"
            )
        return name


class LadderConfig(_Strict):
    """The batch sizes: an explicit list, or ``per_octave`` rungs per doubling from ``min``
    to ``max`` (1: the powers of two)."""

    batch_sizes: list[Annotated[int, Field(gt=0)]] | None = None
    min: int | None = Field(default=None, gt=0)
    max: int | None = Field(default=None, gt=0)
    per_octave: int | None = Field(
        default=None,
        ge=1,
        le=8,
        description=(
            "Rungs per doubling of the batch size between min and max, spaced evenly in "
            "log B and rounded: 1 (the default) gives the powers of two, 2 also each "
            "doubling's middle (16, 23, 32, 45, 64, ...). The fit pools the rungs, so more "
            "rungs average each rung's search noise out of B_crit's interval; a "
            "two-dimensional search space needs 2 (README, 'Rungs per doubling')."
        ),
    )

    @model_validator(mode="after")
    def _one_form(self) -> LadderConfig:
        if self.batch_sizes is not None:
            if self.min is not None or self.max is not None or self.per_octave is not None:
                raise ValueError("give either batch_sizes or min/max (and per_octave), not both")
            if not self.batch_sizes:
                raise ValueError("batch_sizes is empty; give at least one batch size")
            if len(set(self.batch_sizes)) != len(self.batch_sizes):
                raise ValueError("batch_sizes has duplicates")
        elif self.min is None or self.max is None:
            raise ValueError("give batch_sizes = [...] or both min and max (powers of two)")
        elif self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        elif not self.values():
            raise ValueError(
                f"no power of two lies between min={self.min} and max={self.max}"
                if self.per_octave in (None, 1)
                else f"no rung of {self.per_octave} per doubling lies between "
                f"min={self.min} and max={self.max}"
            )
        return self

    def values(self) -> list[int]:
        """The rungs, ascending."""
        if self.batch_sizes is not None:
            return sorted(self.batch_sizes)
        assert self.min is not None and self.max is not None
        n = self.per_octave or 1
        # one step wider on each side: a rounded size may fall inside from just outside
        first, last = math.floor(n * math.log2(self.min)), math.ceil(n * math.log2(self.max))
        sizes = {round(2 ** (k / n)) for k in range(first - 1, last + 2)}
        return sorted(b for b in sizes if self.min <= b <= self.max)


class SearchConfig(_Strict):
    """Per-rung tuning: sampler, trials per rung and the search space."""

    sampler: Sampler = "sobol"
    trials_per_rung: int = Field(default=16, gt=0, le=4096)
    space: dict[str, ParamRange] | None = None
    fixed: dict[str, float] = Field(
        default_factory=dict, description="Hyperparameters held constant (not searched)."
    )
    warm_start: bool = Field(
        default=False,
        description=(
            "Search each rung in a window around the next smaller rung's best point "
            "(the smallest rung searches the whole space). Off by default: rungs then "
            "wait for their neighbour, and the result depends on its best trial."
        ),
    )
    warm_start_width: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Window width per searched dimension, as a fraction of its (log) range.",
    )
    refine: int = Field(
        default=8,
        ge=0,
        le=4096,
        description=(
            "After a rung's search, this many more quasi-random trials in a window around "
            "its best point (sobol and random samplers; 0: off)."
        ),
    )
    refine_width: float = Field(
        default=0.125,
        gt=0,
        le=1,
        description="The refinement window per searched dimension, a fraction of its (log) range.",
    )
    edge_extension: float = Field(
        default=0.0,
        ge=0,
        le=4,
        allow_inf_nan=False,
        description=(
            "Where a rung's best search point is on the edge of a searched dimension "
            "(within 5% of its low or high end, or the lowest or highest value tried), its "
            "refinement window in that dimension reaches this far beyond that end, as a "
            "fraction of the configured (log) range (0.125 on a log range of 3 decades: a "
            "factor of 10**0.375 = 2.4 beyond it), clamped to the values the hyperparameter "
            "can take (1 - momentum and warmup_fraction in [0, 1], others >= 0). 0 (the "
            "default, so that studies started before it existed keep their meaning): "
            "refinement stays inside the configured range; the examples use 0.125."
        ),
    )
    neighbours: int = Field(
        default=0,
        ge=0,
        le=64,
        description=(
            "After a rung's search and refinement, and those of its neighbouring rungs, "
            "this many more trials that start from the neighbours' best points, the "
            "learning rate moved to this batch size by the optimizer's default rule "
            "(linear for the SGD family, square root for the Adam family; "
            "batchlab.optim.transfer_hparams): trial i starts from the i-th nearest rung "
            "(the one below first), exactly at its moved point while every neighbour has "
            "one, then in a refine_width window around it. Tuned hyperparameters change "
            "gradually from one batch size to the next (the tuned learning rates of "
            "Shallue et al. 2018), so a rung whose "
            "own search missed the optimum (most likely in a two-dimensional space) finds "
            "it there. Under warm_start only smaller rungs count, and the smallest rung "
            "has none. Sobol and random samplers; 0 (the default, so that studies started "
            "before it existed keep their meaning): off; the examples use 2."
        ),
    )
    confirm_top: int = Field(
        default=2,
        ge=0,
        le=64,
        description=(
            "After a rung's search, re-run its best this-many candidates with fresh seeds; "
            "the rung's steps-to-result is then the fewest median steps over seeds of a "
            "candidate instead of the luckiest single trial (0: off)."
        ),
    )
    confirm_seeds: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Fresh seeds per confirmed candidate (the search trial makes one more).",
    )
    confirm_reserve: int = Field(
        default=0,
        ge=0,
        le=64,
        description=(
            "Candidates held in reserve for confirmation: when the candidate a rung "
            "would choose after confirmation did not reach the target on every seed it "
            "ran (near the edge of stability the luckiest points are often unstable: "
            "one seed fast, another never), the next this-many candidates are confirmed "
            "too, on confirm_seeds fresh seeds each; otherwise their trials are skipped "
            "(never trained). 0 (the default, so that studies started before it existed "
            "keep their meaning): off; the examples use 1."
        ),
    )
    spread_seeds: int = Field(
        default=0,
        ge=0,
        le=64,
        description=(
            "More seeds for a chosen candidate whose seeds disagree. Once a rung's "
            "confirmations (and reserve) are over, where the candidate it would choose "
            "needed spread_ratio times as many steps on one seed as on another, or never "
            "reached the target on some seed (a point near the edge of stability), it "
            "re-runs that candidate on this many more fresh seeds, so that its median "
            "rests on more than one middle seed; other rungs skip these trials (never "
            "trained). An even number keeps the candidate's seed count odd under "
            "confirm_seeds = 2, so its median is one of the middle seeds, not the lower of "
            "two. None without confirmation (confirm_top = 0). 0 (the default, so that "
            "studies started before it existed keep their meaning): off; the default study "
            "(examples/mnist1d-cnn.toml) uses 4."
        ),
    )
    spread_rounds: int = Field(
        default=1,
        ge=1,
        le=8,
        description=(
            "Rounds of spread seeds. After a round, the rung chooses again over every "
            "seed so far; where it now chooses another candidate, one with fewer seeds "
            "that disagree (spread_ratio, or a missed seed), the next round runs it on "
            "spread_seeds more fresh seeds (a candidate chosen on three seeds, say 190, "
            "425 and 554 steps, over one whose seven seeds are known). Later rounds are "
            "skipped (never trained) once the chosen candidate has had its spread seeds "
            "or its seeds agree. 1 (the default, so that studies started before it "
            "existed keep their meaning): one round; the default study "
            "(examples/mnist1d-cnn.toml) uses 2."
        ),
    )
    spread_ratio: float = Field(
        default=2.0,
        gt=1,
        le=100,
        allow_inf_nan=False,
        description=(
            "How far apart a chosen candidate's seeds must be (most steps over fewest) "
            "before spread_seeds more seeds are run."
        ),
    )
    recheck: int = Field(
        default=0,
        ge=0,
        le=64,
        description=(
            "Seeds of a rising rung's recheck. Once a rung and every smaller one are "
            "tuned, a rung rises where every seed of its chosen candidate needed more "
            "steps than every seed of a smaller rung's (with 3 seeds each, 1 chance in 20 "
            "when both need the same), or so many of more seeds that chance would do it as "
            "rarely (6 of 7 against 3): at its best settings a larger batch needs no more "
            "steps, so its search most likely missed its optimum. Such a rung then runs the "
            "chosen point of the smaller rung with the fewest steps (of those whose counts "
            "lie within its seeds, the largest) on this many seeds, as one more candidate; "
            "rungs that do not rise skip these trials (never trained). "
            "None without confirmation (confirm_top = 0). 0 (the default, so that studies "
            "started before it existed keep their meaning): off; the default study "
            "(examples/mnist1d-cnn.toml) uses 3, a candidate's seeds under confirm_seeds = 2."
        ),
    )

    @model_validator(mode="after")
    def _warm_start_sampler(self) -> SearchConfig:
        if self.warm_start and self.sampler == "tpe":
            raise ValueError(
                "warm_start maps the planned sobol/random points into a window; "
                "it does not apply to sampler 'tpe'"
            )
        return self


class TargetConfig(_Strict):
    """The goal that defines steps-to-target: a metric, a value, and which way is better."""

    metric: str = Field(min_length=1)
    value: float
    direction: Literal["max", "min"]

    def to_target(self) -> Target:
        """The workloads' :class:`~batchlab.workloads.Target` for this goal."""
        return Target(self.metric, self.value, self.direction)


class BudgetConfig(_Strict):
    """Step budget per rung: ``steps``, or ``examples`` / B clamped to [min_steps, max_steps]."""

    steps: int | None = Field(default=None, gt=0)
    examples: int | None = Field(default=None, gt=0)
    min_steps: int = Field(default=100, gt=0)
    max_steps: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_form(self) -> BudgetConfig:
        if (self.steps is None) == (self.examples is None):
            raise ValueError("give exactly one of steps or examples")
        if self.max_steps is not None and self.max_steps < self.min_steps:
            raise ValueError(f"max_steps ({self.max_steps}) < min_steps ({self.min_steps})")
        return self

    def steps_for(self, batch_size: int) -> int:
        """The step budget of the rung at ``batch_size``."""
        if self.steps is not None:
            return self.steps
        assert self.examples is not None
        steps = max(self.min_steps, math.ceil(self.examples / batch_size))
        return min(steps, self.max_steps) if self.max_steps is not None else steps


class EvaluationConfig(_Strict):
    """When to evaluate: every ``every`` steps, or ``per_run`` times per budget; denser near the target.

    ``per_run`` keeps the coarse grid relative to each rung's budget, so the large
    rungs (few steps) are measured as finely as the small ones. On that grid alone,
    steps-to-target is rounded up to the next evaluation; ``resolution`` resolves it
    to that fraction of itself: where a trial is predicted to reach the target within
    two coarse intervals it is evaluated every ``max(1, floor(resolution * step))``
    steps (:mod:`batchlab.training._evaluation`). 0 turns dense evaluation off.
    """

    every: int | None = Field(default=None, gt=0)
    per_run: int | None = Field(default=None, gt=0)
    resolution: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="Relative resolution of steps-to-target near the target (0: coarse grid).",
    )

    @model_validator(mode="after")
    def _one_form(self) -> EvaluationConfig:
        if self.every is not None and self.per_run is not None:
            raise ValueError("give either every or per_run, not both")
        return self

    def every_for(self, budget_steps: int) -> int:
        """Steps between evaluations for a run of ``budget_steps`` (at least 1)."""
        if self.every is not None:
            return self.every
        return max(1, budget_steps // (self.per_run or 50))


class ScheduleConfig(_Strict):
    """The learning-rate schedule of every trial: warmup (if searched), then ``decay``.

    The decay runs over each rung's step budget (Shallue et al. 2018 used constant and
    linear-decay schedules); ``warmup_fraction`` in the search space sets the warmup.
    """

    decay: Literal["constant", "linear", "cosine", "poly"] = "constant"


class StoppingConfig(_Strict):
    """Early stopping that cannot change a rung's best steps-to-target."""

    at_target: bool = True
    once_beaten: bool = True


class PruningConfig(_Strict):
    """Pruning hopeless trials from partial curves (median stopping rule); off by default.

    Unlike :class:`StoppingConfig`, this can change a rung's best steps-to-target;
    pruned trials are labelled ``pruned`` in the results and the report says so.
    """

    enabled: bool = False
    quantile: float = Field(
        default=0.5, gt=0, lt=1, description="Prune below this quantile of the peers (0.5: median)."
    )
    after: float = Field(
        default=0.25, ge=0, le=1, description="Fraction of the step budget before any pruning."
    )
    min_peers: int = Field(default=3, ge=1, description="Peers needed before pruning.")


class WorkersConfig(_Strict):
    """Liveness of workers: heartbeat interval and the grace before a trial is re-run."""

    heartbeat_interval: float = Field(default=5.0, gt=0)
    grace_period: float = Field(default=30.0, gt=0)
    max_retries: int = Field(
        default=2,
        ge=0,
        description="Re-runs of a trial whose worker died (OOM killer, segfault) before it "
        "is recorded as failed.",
    )

    @model_validator(mode="after")
    def _grace(self) -> WorkersConfig:
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError("grace_period must be longer than heartbeat_interval")
        return self


class PerformanceConfig(_Strict):
    """How and where trials are executed; none of this changes what a trial measures.

    ``device``, ``precision`` and ``compile`` change float rounding only (and bf16's
    rounding is coarse): each trial records them.

    ``ensemble_size`` trials of a rung train together as one vmapped model
    (``"auto"``: as many as fit in ``ensemble_max_examples`` examples per step,
    since batching stops paying once the per-step work is large).
    ``processes_per_trial`` > 1 trains every trial with DDP on that many processes
    launched through torchrun, each on an equal slice of the global batch (see
    :func:`batchlab.training.run_ddp_trial`); trials then run one at a time, not in
    ensembles.
    """

    ensemble_size: int | Literal["auto"] = "auto"
    ensemble_max_examples: int = Field(default=512, gt=0)
    processes_per_trial: int = Field(default=1, ge=1, le=4096)
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
        description="Where trials train: auto (CUDA if the worker sees a GPU), cpu, cuda, cuda:N.",
    )
    precision: Precision = Field(
        default="fp32", description="fp32, tf32 or bf16 (autocast); recorded per trial."
    )
    compile: bool = Field(
        default=False,
        description="Train through torch.compile (recorded per trial); off by default.",
    )
    ensemble_max_members: int = Field(
        default=64,
        gt=0,
        description="On a GPU, at most this many trials per ensemble (and as many as fit "
        "in its free memory, probed on one member).",
    )

    @field_validator("ensemble_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("ensemble_size must be a positive integer or 'auto'")
        return value

    def size_for(self, batch_size: int, trials: int) -> int:
        """How many of a rung's ``trials`` train together at ``batch_size`` on a CPU (at least 1).

        On a GPU, ``"auto"`` is decided by a memory probe instead
        (:func:`batchlab.study._runner.members_that_fit`).
        """
        if self.ensemble_size == "auto":
            return max(1, min(trials, self.ensemble_max_examples // batch_size))
        return min(int(self.ensemble_size), trials)


class TransferConfig(_Strict):
    """Rungs run "by rule" beside the tuned ones: what each transfer rule costs.

    Every rung except ``base_batch_size`` also trains, on ``seeds`` fresh seeds per
    rule, the base rung's tuned hyperparameters moved to its batch size by
    :func:`batchlab.optim.transfer_hparams` with each learning-rate rule of
    ``rules`` (β2 and weight decay move by their own rules for the optimizers that
    have them). Their steps-to-target, against the tuned rung's, is what following
    the rule instead of tuning costs. Off by default (no rules).
    """

    rules: list[str] = Field(
        default_factory=list,
        description="Learning-rate rules to run (linear, sqrt, none, surge, saturating).",
    )
    base_batch_size: int | None = Field(
        default=None, gt=0, description="The tuned rung the rules start from [smallest rung]."
    )
    seeds: int = Field(default=2, ge=1, le=64, description="Seeds per rule and rung.")
    noise_scale: float | None = Field(
        default=None, gt=0, description="B_noise for the surge and saturating rules."
    )

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, rules: list[str]) -> list[str]:
        unknown = [r for r in rules if r not in LR_RULES]
        if unknown:
            raise ValueError(
                f"unknown rule(s) {', '.join(map(repr, unknown))}; choose from {', '.join(LR_RULES)}"
            )
        if len(set(rules)) != len(rules):
            raise ValueError("each rule once")
        return rules

    @model_validator(mode="after")
    def _noise_scale_where_needed(self) -> TransferConfig:
        needs = [r for r in self.rules if r in NOISE_SCALE_LR_RULES]
        if needs and self.noise_scale is None:
            raise ValueError(f"rule(s) {', '.join(needs)} need transfer.noise_scale (B_noise)")
        return self


class StudyConfig(_Strict):
    """A batch-size scaling study (Shallue et al. 2018): ladder, tuning, target, budget.

    Load one from TOML with :meth:`from_toml`; see ``examples/`` for every workload.
    """

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    workload: WorkloadConfig
    ladder: LadderConfig
    optimizer: str = "nesterov"
    search: SearchConfig = Field(default_factory=SearchConfig)
    target: TargetConfig | None = None
    budget: BudgetConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    stopping: StoppingConfig = Field(default_factory=StoppingConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    seed: int = Field(default=0, ge=0)
    storage: str | None = Field(
        default=None,
        description=(
            "Optuna storage URL; default: a journal file in the study dir. A password in "
            "it stays in memory: saved configs drop it (PGPASSWORD or ~/.pgpass supply it)."
        ),
    )

    @field_serializer("storage")
    def _storage_without_password(self, storage: str | None) -> str | None:
        # Every saved copy of the config (config.json, results.json, the storage's
        # own record of it) goes through here: none keeps the password.
        return None if storage is None else redact_url(storage, mask=None)

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        if name not in OPTIMIZER_HPARAMS:
            raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
        return name

    @model_validator(mode="after")
    def _space_fits_optimizer(self) -> StudyConfig:
        accepted = set(OPTIMIZER_HPARAMS[self.optimizer])
        allowed = (
            accepted
            | set(SCHEDULE_PARAMS)
            | {key for key, base in ONE_MINUS.items() if base in accepted}
        )
        searched = set(self.search_space())
        for key in sorted(searched | set(self.search.fixed)):
            if key not in allowed:
                raise ValueError(
                    f"hyperparameter {key!r} does not apply to optimizer {self.optimizer!r}; "
                    f"allowed: {', '.join(sorted(allowed))}"
                )
        both = searched & set(self.search.fixed)
        if both:
            raise ValueError(f"{', '.join(sorted(both))} is both searched and fixed")
        if "lr" not in searched and "lr" not in self.search.fixed:
            raise ValueError("the search space must include lr (or fix it in search.fixed)")
        for key, base in ONE_MINUS.items():
            if key in searched and base in searched:
                raise ValueError(f"search either {key} or {base}, not both")
            space = self.search_space().get(key)
            if space is not None and not (space.low > 0 and space.high <= 1):
                raise ValueError(f"{key} must lie in (0, 1], got [{space.low:g}, {space.high:g}]")
        warmup = self.search_space().get("warmup_fraction")
        if warmup is not None and not (0 <= warmup.low and warmup.high <= 1):
            raise ValueError("warmup_fraction must lie in [0, 1]")
        processes = self.performance.processes_per_trial
        if processes > 1 and self.pruning.enabled:
            raise ValueError(
                "pruning.enabled is not supported with performance.processes_per_trial > 1 "
                "(a DDP trial runs in its own processes); turn one of them off"
            )
        if processes > 1 and self.performance.device.startswith("cuda"):
            raise ValueError(
                "performance.processes_per_trial > 1 trains on the CPU (gloo); with "
                f"performance.device = {self.performance.device!r} use one process per trial "
                "(and one worker per GPU)"
            )
        uneven = [b for b in self.ladder.values() if b % processes]
        if uneven:
            raise ValueError(
                f"performance.processes_per_trial = {processes} must divide every batch size "
                f"(each process trains an equal slice); it does not divide {uneven}"
            )
        base = self.transfer.base_batch_size
        if self.transfer.rules and base is not None and base not in self.ladder.values():
            raise ValueError(
                f"transfer.base_batch_size = {base} is not a rung of the ladder "
                f"({', '.join(map(str, self.ladder.values()))})"
            )
        for batch_size in self.ladder.values():
            budget = self.budget.steps_for(batch_size)
            every = self.evaluation.every_for(budget)
            if budget < every:
                raise ValueError(
                    f"the step budget at batch size {batch_size} ({budget}) is smaller than the "
                    f"evaluation interval ({every}): the run would never be evaluated"
                )
        return self

    def search_space(self) -> dict[str, ParamRange]:
        """The searched hyperparameters (the optimizer's defaults if not configured)."""
        if self.search.space is not None:
            return dict(self.search.space)
        return {
            k: v
            for k, v in default_search_space(self.optimizer).items()
            if k not in self.search.fixed
        }

    def batch_sizes(self) -> list[int]:
        """The ladder's batch sizes, ascending."""
        return self.ladder.values()

    def to_json_dict(self) -> dict[str, Any]:
        """The config as plain JSON data (what ``config.json`` holds)."""
        return json.loads(self.model_dump_json())

    @classmethod
    def from_toml(cls, path: str | Path) -> StudyConfig:
        """Read and validate a TOML study file."""
        path = Path(path)
        with path.open("rb") as handle:
            data = tomllib.load(handle)
        workload = data.get("workload")
        if isinstance(workload, dict) and isinstance(workload.get("path", []), list):
            # Relative entries are relative to the config file; its directory comes last.
            home = path.resolve().parent
            entries = [str((home / str(p)).resolve()) for p in workload.get("path", [])]
            workload["path"] = list(dict.fromkeys([*entries, str(home)]))
        return cls.model_validate(data)

    def with_workload_path(self, directories: list[Path]) -> StudyConfig:
        """This config with ``directories`` (``--workload-path``) searched first."""
        if not directories:
            return self
        path = [str(d.expanduser().resolve()) for d in directories] + self.workload.path
        workload = self.workload.model_copy(update={"path": list(dict.fromkeys(path))})
        return self.model_copy(update={"workload": workload})


def resolve_target(config: StudyConfig, workload: Workload) -> Target:
    """The configured target, or the workload's default."""
    return config.target.to_target() if config.target is not None else workload.target


def validate_against_workload(config: StudyConfig, workload: Workload) -> None:
    """Checks that need the built workload: target metric and training-set size."""
    target = resolve_target(config, workload)
    if target.metric not in workload.metrics:
        raise ConfigError(
            f"target.metric: workload {workload.name!r} does not report {target.metric!r}; "
            f"it reports: {', '.join(workload.metrics)}"
        )
    has_exact = has_exact_curves(workload)
    warmup = (
        "warmup_fraction" in config.search_space()
        or config.search.fixed.get("warmup_fraction", 0.0) > 0
    )
    if has_exact and (warmup or config.schedule.decay != "constant"):
        raise ConfigError(
            f"schedule: workload {workload.name!r} computes exact curves for a constant "
            "learning rate only; drop warmup_fraction and set schedule.decay = 'constant'"
        )
    if has_exact and config.performance.processes_per_trial > 1:
        raise ConfigError(
            f"performance.processes_per_trial: workload {workload.name!r} computes exact "
            "curves, with no training to spread over processes; set it to 1"
        )
    largest = max(config.batch_sizes())
    if workload.train_size is not None and largest > workload.train_size:
        raise ConfigError(
            f"ladder: batch size {largest} is larger than the training set of "
            f"{workload.name!r} ({workload.train_size} examples)"
        )
