"""The reproduction plan: which studies each finding needs, and the extra measurements.

A plan is a directory of TOML files (``examples/findings/full`` or ``.../quick``):
``findings.toml`` assigns studies to the seven findings and sets the measurements
that are not studies (fixed-epoch runs, noise scale during training); every other
``*.toml`` in the directory is a study config (:class:`~batchlab.study.StudyConfig`),
referred to by its ``name``. Everything is validated when the plan is loaded, so a
typo fails before an hour of training, not after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._errors import ConfigError
from ..study import StudyConfig

PLAN_FILE = "findings.toml"

#: Where the plans live, relative to a checkout of the repository.
PLANS_DIR = Path("examples") / "findings"

Variant = Literal["full", "quick"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegimesSettings(_Strict):
    """Findings 1 and 3: one study per model, each tuned at every rung."""

    studies: list[str] = Field(min_length=2)


class MomentumSettings(_Strict):
    """Finding 2: the same workload and ladder with plain SGD and with momentum."""

    sgd: str
    momentum: str


class DatasetSizeSettings(_Strict):
    """Finding 4: the same study on a small and a large training set."""

    small: str
    large: str
    #: B_crit ratios within [1/factor, factor] count as "matters little".
    factor: float = Field(default=2.0, gt=1.0)


class FixedEpochsSettings(_Strict):
    """Finding 5: every rung's tuned hyperparameters at a fixed epoch budget and at its step budget.

    ``tolerance`` is the smallest metric difference read as a real one (about two
    binomial standard errors of an accuracy on the workload's validation set).
    """

    study: str
    epochs: float = Field(gt=0)
    small_batch_max: int = Field(default=32, gt=0)
    tolerance: float = Field(gt=0)
    evaluations: int = Field(default=20, gt=0, description="Evaluations per run.")


class NoiseRun(_Strict):
    """How B_simple is measured for one study: big batch, micro-batch, number of batches."""

    study: str
    batch_size: int = Field(gt=1)
    micro_batch_size: int = Field(gt=0)
    batches: int = Field(default=32, ge=2)

    @model_validator(mode="after")
    def _splits(self) -> NoiseRun:
        if self.batch_size % self.micro_batch_size or self.batch_size // self.micro_batch_size < 2:
            raise ValueError(
                f"micro_batch_size ({self.micro_batch_size}) must divide batch_size "
                f"({self.batch_size}) into at least two micro-batches"
            )
        return self


class NoiseScaleSettings(_Strict):
    """Finding 6: B_simple at ``checkpoints`` evenly spaced points of a run to the target."""

    checkpoints: int = Field(default=5, ge=2, le=50)
    factor: float = Field(default=10.0, gt=1.0)
    runs: list[NoiseRun] = Field(min_length=1)


class LargeBatchSettings(_Strict):
    """Finding 7: large-batch optimizers against momentum on the reference's largest rungs."""

    reference: str
    others: list[str] = Field(min_length=1)


class PlanSettings(_Strict):
    """The contents of ``findings.toml``."""

    variant: Variant
    description: str = ""
    regimes: RegimesSettings
    momentum: MomentumSettings
    dataset_size: DatasetSizeSettings
    fixed_epochs: FixedEpochsSettings
    noise_scale: NoiseScaleSettings
    large_batch: LargeBatchSettings


class Plan(BaseModel):
    """A validated plan: its settings and the study configs, by name.

    Attributes:
        settings: what each finding uses.
        studies: study name -> config, in the order the findings first name them.
        directory: where the plan was read from.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    settings: PlanSettings
    studies: dict[str, StudyConfig]
    directory: Path

    @property
    def variant(self) -> Variant:
        return self.settings.variant

    def study(self, name: str) -> StudyConfig:
        """The study config called ``name`` (a :class:`ConfigError` naming the known ones)."""
        try:
            return self.studies[name]
        except KeyError:
            raise ConfigError(
                f"no study named {name!r} in {self.directory}; it has: {', '.join(self.studies)}"
            ) from None


def _references(settings: PlanSettings) -> Iterator[tuple[str, str]]:
    """(field, study name) for every study the settings refer to."""
    for i, name in enumerate(settings.regimes.studies):
        yield f"regimes.studies[{i}]", name
    yield "momentum.sgd", settings.momentum.sgd
    yield "momentum.momentum", settings.momentum.momentum
    yield "dataset_size.small", settings.dataset_size.small
    yield "dataset_size.large", settings.dataset_size.large
    yield "fixed_epochs.study", settings.fixed_epochs.study
    for i, run in enumerate(settings.noise_scale.runs):
        yield f"noise_scale.runs[{i}].study", run.study
    yield "large_batch.reference", settings.large_batch.reference
    for i, name in enumerate(settings.large_batch.others):
        yield f"large_batch.others[{i}]", name


def _check(settings: PlanSettings, studies: dict[str, StudyConfig], where: Path) -> None:
    """Cross-checks between the settings and the studies they name."""
    for field, name in _references(settings):
        if name not in studies:
            raise ConfigError(
                f"{where / PLAN_FILE}: {field} names study {name!r}, which no config in "
                f"{where} defines; known studies: {', '.join(studies) or 'none'}"
            )
    sgd, momentum = studies[settings.momentum.sgd], studies[settings.momentum.momentum]
    if sgd.optimizer != "sgd" or momentum.optimizer not in ("momentum", "nesterov"):
        raise ConfigError(
            f"{where / PLAN_FILE}: momentum.sgd must use optimizer 'sgd' and momentum.momentum "
            f"'momentum' or 'nesterov'; got {sgd.optimizer!r} and {momentum.optimizer!r}"
        )
    small, large = studies[settings.dataset_size.small], studies[settings.dataset_size.large]
    if small.workload.name != large.workload.name or small.optimizer != large.optimizer:
        raise ConfigError(
            f"{where / PLAN_FILE}: dataset_size.small and .large must share workload and "
            f"optimizer; got {small.workload.name}/{small.optimizer} and "
            f"{large.workload.name}/{large.optimizer}"
        )
    reference = studies[settings.large_batch.reference]
    for name in settings.large_batch.others:
        missing = sorted(set(studies[name].batch_sizes()) - set(reference.batch_sizes()))
        if missing:
            raise ConfigError(
                f"{where / PLAN_FILE}: large_batch study {name!r} has rungs {missing} that the "
                f"reference {reference.name!r} lacks"
            )
        if studies[name].workload != reference.workload:
            raise ConfigError(
                f"{where / PLAN_FILE}: large_batch study {name!r} must use the reference's "
                "workload and parameters"
            )
    for run in settings.noise_scale.runs:
        if run.study not in settings.regimes.studies:
            raise ConfigError(
                f"{where / PLAN_FILE}: noise_scale run for {run.study!r}: the study must also be "
                "one of regimes.studies (its B_crit is the one predicted)"
            )


def load_plan(directory: str | Path) -> Plan:
    """Read and validate a plan directory (``findings.toml`` and the study configs)."""
    directory = Path(directory)
    plan_file = directory / PLAN_FILE
    if not plan_file.is_file():
        raise ConfigError(f"{directory} is not a findings plan (no {PLAN_FILE})")
    with plan_file.open("rb") as handle:
        settings = PlanSettings.model_validate(tomllib.load(handle))
    studies: dict[str, StudyConfig] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name == PLAN_FILE:
            continue
        config = StudyConfig.from_toml(path)
        if config.name in studies:
            raise ConfigError(f"{path}: study name {config.name!r} is used by two configs")
        studies[config.name] = config
    _check(settings, studies, directory)
    order = list(dict.fromkeys(name for _, name in _references(settings)))
    unused = sorted(set(studies) - set(order))
    if unused:
        raise ConfigError(
            f"{directory}: {', '.join(unused)} is not used by any finding in {PLAN_FILE}; "
            "remove the config or refer to it"
        )
    # Studies run in the order the findings name them.
    return Plan(
        settings=settings, studies={name: studies[name] for name in order}, directory=directory
    )


def default_plan_dir(variant: Variant, start: str | Path | None = None) -> Path:
    """``examples/findings/<variant>`` in the working directory or in batchlab's checkout.

    Raises:
        ConfigError: neither exists (an installed batchlab without its examples).
    """
    candidates = [Path(start or Path.cwd()) / PLANS_DIR / variant]
    # An editable install or a checkout: src/batchlab/reproduce/_plan.py -> repository root.
    candidates.append(Path(__file__).resolve().parents[3] / PLANS_DIR / variant)
    for candidate in candidates:
        if (candidate / PLAN_FILE).is_file():
            return candidate
    raise ConfigError(
        f"no findings plan found (looked for {' and '.join(str(c) for c in candidates)}); "
        "run from a batchlab checkout or pass --plan DIR"
    )
