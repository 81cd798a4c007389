"""What LARS and LAMB share as ``torch.optim.Optimizer`` subclasses: validated groups
and ``step()`` (the closure, then each group's update)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT


class LayerwiseOptimizer(Optimizer):
    """An optimizer with per-tensor trust ratios and ``lars_exclude`` param groups.

    Every group's hyperparameters are checked by the subclass's ``check_group``: the
    constructor's defaults, and each group added later (``add_param_group``), as
    torch's own optimizers check theirs. Groups from an older ``state_dict`` get the
    current defaults of the optional keys. ``step()`` runs the closure and then the
    subclass's ``_step_group`` on every group.
    """

    #: Raises ``ValueError`` naming a hyperparameter of a group that is invalid.
    check_group: ClassVar[Callable[[dict[str, Any]], None]]
    #: Keys an older saved group may lack, with their defaults.
    optional_keys: ClassVar[dict[str, Any]] = {"lars_exclude": False, "foreach": None}

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        type(self).check_group(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; its hyperparameters are validated like the constructor's."""
        super().add_param_group(param_group)
        type(self).check_group(self.param_groups[-1])

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.optional_keys.items():
                group.setdefault(key, value)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step over every parameter that has a gradient.

        Args:
            closure: re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or ``None`` without a closure.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    @abstractmethod
    def _step_group(self, group: dict[str, Any]) -> None:
        """Update the parameters of ``group`` that have a gradient (under no_grad)."""
