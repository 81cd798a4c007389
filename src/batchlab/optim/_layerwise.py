"""What LARS and LAMB share as ``torch.optim.Optimizer`` subclasses: validated groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT


class LayerwiseOptimizer(Optimizer):
    """An optimizer with per-tensor trust ratios and ``lars_exclude`` param groups.

    Every group's hyperparameters are checked by the subclass's ``check_group``: the
    constructor's defaults, and each group added later (``add_param_group``), as
    torch's own optimizers check theirs. Groups from an older ``state_dict`` get the
    current defaults of the optional keys.
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
