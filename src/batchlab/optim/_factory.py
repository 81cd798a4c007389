"""Optimizers by name, so that a study config can say ``optimizer = "nesterov"``.

Every optimizer the study engine may tune is here, with the hyperparameters it
accepts. Names follow Shallue et al. 2018 (plain SGD, heavy-ball momentum, Nesterov
momentum) plus Adam/AdamW and the large-batch optimizers LARS and LAMB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .._errors import BatchlabError
from ._param_groups import lars_param_groups

#: name -> hyperparameters it accepts (``lr`` is always required).
OPTIMIZER_HPARAMS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr", "weight_decay"),
    "momentum": ("lr", "momentum", "weight_decay"),
    "nesterov": ("lr", "momentum", "weight_decay"),
    "adam": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "adamw": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "lars": ("lr", "momentum", "weight_decay", "trust_coefficient", "eps"),
    "lamb": ("lr", "beta1", "beta2", "eps", "weight_decay"),
}

OPTIMIZERS: tuple[str, ...] = tuple(OPTIMIZER_HPARAMS)

#: Optimizers with a per-layer trust ratio: :func:`optimizer_for` gives them
#: :func:`~batchlab.optim.lars_param_groups`.
LAYERWISE_OPTIMIZERS: tuple[str, ...] = ("lars", "lamb")


class UnknownOptimizerError(BatchlabError, ValueError):
    """An optimizer name that batchlab does not know."""


def _sgd(params: Any, hp: dict[str, float], nesterov: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=hp["lr"],
        momentum=hp.get("momentum", 0.9),
        nesterov=nesterov,
        weight_decay=hp.get("weight_decay", 0.0),
    )


def _adam_kwargs(hp: dict[str, float], eps: float) -> dict[str, Any]:
    return {
        "lr": hp["lr"],
        "betas": (hp.get("beta1", 0.9), hp.get("beta2", 0.999)),
        "eps": hp.get("eps", eps),
        "weight_decay": hp.get("weight_decay", 0.0),
    }


def _lars(params: Any, hp: dict[str, float]) -> torch.optim.Optimizer:
    from ._lars import LARS

    kwargs = {k: hp[k] for k in ("momentum", "weight_decay", "trust_coefficient", "eps") if k in hp}
    return LARS(params, lr=hp["lr"], **kwargs)


def _lamb(params: Any, hp: dict[str, float]) -> torch.optim.Optimizer:
    from ._lamb import LAMB

    return LAMB(params, **_adam_kwargs(hp, eps=1e-6))


_BUILDERS: dict[str, Callable[[Any, dict[str, float]], torch.optim.Optimizer]] = {
    "sgd": lambda params, hp: torch.optim.SGD(
        params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0.0)
    ),
    "momentum": lambda params, hp: _sgd(params, hp, nesterov=False),
    "nesterov": lambda params, hp: _sgd(params, hp, nesterov=True),
    "adam": lambda params, hp: torch.optim.Adam(params, **_adam_kwargs(hp, eps=1e-8)),
    "adamw": lambda params, hp: torch.optim.AdamW(params, **_adam_kwargs(hp, eps=1e-8)),
    "lars": _lars,
    "lamb": _lamb,
}


def check_optimizer_name(name: str) -> str:
    """``name`` if batchlab knows it, else an error listing the valid names."""
    if name not in OPTIMIZER_HPARAMS:
        raise UnknownOptimizerError(
            f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}"
        )
    return name


def build_optimizer(
    name: str, params: Iterable[Any], hparams: Mapping[str, float]
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``params`` with ``hparams`` (``lr`` required).

    Hyperparameters an optimizer does not take are an error (a typo must not be a
    silent default). ``momentum`` defaults to 0.9 for the momentum methods and
    ``beta1``/``beta2`` to 0.9/0.999 for the Adam family.

    Args:
        name: one of :data:`OPTIMIZERS`.
        params: parameters or param groups, as for any ``torch.optim.Optimizer``.
        hparams: e.g. ``{"lr": 0.1, "momentum": 0.9}``.
    """
    check_optimizer_name(name)
    accepted = OPTIMIZER_HPARAMS[name]
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} does not take {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
    if "lr" not in hparams:
        raise ValueError(f"optimizer {name!r} needs a learning rate 'lr'")
    return _BUILDERS[name](params, {key: float(value) for key, value in hparams.items()})


def optimizer_for(
    model: nn.Module, name: str, hparams: Mapping[str, float]
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``model``'s trainable parameters, grouped as it needs.

    LARS and LAMB get :func:`~batchlab.optim.lars_param_groups` (biases and norm
    weights skip the trust ratio and weight decay; You et al. 2017, Goyal et al. 2017
    Sec. 5.1); every other optimizer gets the trainable parameters as one group. This
    is the one place batchlab builds an optimizer for a model: the study's trials,
    branching CBS, the findings' runs and ``batchlab noise-scale --train`` all call it,
    so a base run's optimizer state always loads into its branches.

    Args:
        model: the model to optimise (frozen parameters are left out).
        name: one of :data:`OPTIMIZERS`.
        hparams: the optimizer's hyperparameters (see :func:`build_optimizer`).

    Returns:
        The optimizer, at a constant learning rate ``hparams["lr"]``.
    """
    check_optimizer_name(name)
    params: Any = [p for p in model.parameters() if p.requires_grad]
    if name in LAYERWISE_OPTIMIZERS:
        params = lars_param_groups(model, float(hparams.get("weight_decay", 0.0)))
    return build_optimizer(name, params, hparams)
