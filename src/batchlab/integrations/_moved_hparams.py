"""The optimizer hyperparameters a batch-growing callback moves, and the resume check on them.

A callback that grows the batch during training (Lightning's or the Hugging Face
Trainer's) moves each param group's ``lr`` / ``betas`` / ``weight_decay`` (and the LR
scheduler's base LRs) whenever it applies a larger batch. Its checkpointed state keeps
those values as plain numbers (:func:`moved_hparams`), and a resumed run checks that
the optimizer's and the scheduler's own restored state hold the same ones
(:func:`check_hparams`): otherwise the moves would be lost without a word.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The param-group entries a grower moves (``initial_lr``: set by torch LR schedulers).
MOVED_HPARAMS = ("lr", "betas", "weight_decay", "initial_lr")


def moved_hparams(optimizer: Any, lr_scheduler: Any) -> dict[str, Any]:
    """What a grower moves, as plain numbers: each param group's :data:`MOVED_HPARAMS`
    (those it has) and the LR scheduler's ``base_lrs`` (``None`` without them)."""
    groups = [
        {key: _plain(group[key]) for key in MOVED_HPARAMS if key in group}
        for group in optimizer.param_groups
    ]
    base_lrs = getattr(lr_scheduler, "base_lrs", None)  # ReduceLROnPlateau has none
    base_lrs = None if base_lrs is None else [float(v) for v in base_lrs]
    return {"param_groups": groups, "base_lrs": base_lrs}


def check_hparams(name: str, saved: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """A ValueError naming the first moved hyperparameter that did not come back as saved.

    Args:
        name: the callback's name, for the message.
        saved: :func:`moved_hparams` at the checkpoint.
        now: :func:`moved_hparams` of the resumed run's optimizer and scheduler.
    """
    groups, saved_groups = now["param_groups"], saved["param_groups"]
    if len(groups) != len(saved_groups):
        raise ValueError(
            f"{name} cannot resume: the checkpointed optimizer had {len(saved_groups)} param "
            f"groups, this one {len(groups)}"
        )
    hint = (
        "the optimizer's state was not restored from the checkpoint (or was changed after); "
        "the batch-size moves it holds would be lost"
    )
    for index, (before, after) in enumerate(zip(saved_groups, groups, strict=True)):
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                raise ValueError(
                    f"{name} cannot resume exactly: param group {index}'s {key} is "
                    f"{after.get(key)!r} but was {before.get(key)!r} at the checkpoint; {hint}"
                )
    if saved["base_lrs"] != now["base_lrs"]:
        raise ValueError(
            f"{name} cannot resume exactly: the LR scheduler's base_lrs are {now['base_lrs']!r} "
            f"but were {saved['base_lrs']!r} at the checkpoint; its state was not restored "
            "(or the scheduler differs)"
        )


def _plain(value: Any) -> Any:
    return [float(v) for v in value] if isinstance(value, list | tuple) else float(value)
