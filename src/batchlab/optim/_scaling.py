"""Learning-rate scaling rules: the learning rate at batch size B from one tuned at B0."""

from __future__ import annotations

import math

from ._validation import check_choice, check_int, check_real

#: Names accepted by :func:`scale_lr`.
SCALING_RULES: tuple[str, ...] = ("linear", "sqrt", "none")


def scale_lr(base_lr: float, base_batch_size: int, batch_size: int, rule: str = "linear") -> float:
    """The learning rate for ``batch_size`` given one tuned at ``base_batch_size``.

    ``linear`` keeps the update per example fixed, lr = base_lr·B/B0 (Goyal et al.
    2017; it needs warmup beyond B ≈ 8k on ImageNet); ``sqrt`` keeps the variance of
    the update fixed, lr = base_lr·√(B/B0) (Krizhevsky 2014, Hoffer et al. 2017);
    ``none`` returns ``base_lr``. These are starting points: Shallue et al. 2018 find
    that the best learning rate follows neither rule beyond the perfect-scaling regime,
    which is why a scaling study tunes every batch size.

    References:
        Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        https://arxiv.org/abs/1706.02677
        Krizhevsky 2014, "One weird trick for parallelizing convolutional neural
        networks", https://arxiv.org/abs/1404.5997
        Hoffer, Hubara, Soudry 2017, "Train longer, generalize better",
        https://arxiv.org/abs/1705.08741

    Args:
        base_lr: learning rate tuned at ``base_batch_size``, >= 0.
        base_batch_size: B0, a positive integer.
        batch_size: B, a positive integer.
        rule: ``"linear"``, ``"sqrt"`` or ``"none"``.

    Returns:
        The scaled learning rate.
    """
    base_lr = check_real("base_lr", base_lr, low=0.0)
    check_int("base_batch_size", base_batch_size, low=1)
    check_int("batch_size", batch_size, low=1)
    check_choice("rule", rule, SCALING_RULES)
    ratio = batch_size / base_batch_size
    if rule == "linear":
        return base_lr * ratio
    if rule == "sqrt":
        return base_lr * math.sqrt(ratio)
    return base_lr
