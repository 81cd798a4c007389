"""scale_lr against the linear and square-root rules."""

from __future__ import annotations

import math

import pytest

from batchlab.optim import scale_lr


def test_linear_rule_scales_lr_with_batch_size():
    assert scale_lr(0.1, 256, 1024, "linear") == 0.4
    assert scale_lr(0.1, 256, 64) == pytest.approx(0.025)


def test_sqrt_rule_scales_lr_with_square_root_of_batch_size():
    assert scale_lr(0.1, 256, 1024, "sqrt") == 0.2
    assert scale_lr(0.1, 256, 512, "sqrt") == pytest.approx(0.1 * math.sqrt(2))


def test_none_rule_keeps_the_base_lr():
    assert scale_lr(0.1, 256, 8192, "none") == 0.1


def test_same_batch_size_keeps_the_base_lr_under_every_rule():
    assert {scale_lr(0.3, 128, 128, rule) for rule in ("linear", "sqrt", "none")} == {0.3}


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((-0.1, 256, 1024, "linear"), "base_lr"),
        ((0.1, 0, 1024, "linear"), "base_batch_size"),
        ((0.1, 256, -1, "linear"), "batch_size"),
        ((0.1, 256, 0, "linear"), "batch_size"),
        ((0.1, 256.0, 1024, "linear"), "base_batch_size"),
        ((0.1, 256, 1024, "cube"), "rule"),
    ],
)
def test_scale_lr_rejects_invalid_arguments_naming_them(args, name):
    with pytest.raises(ValueError, match=name):
        scale_lr(*args)
