"""``wsd_multiplier``: warmup-stable-decay against its closed form (Hu et al. 2024)."""

from __future__ import annotations

import math
import pickle

import pytest

from batchlab.optim import WSD_DECAYS, wsd_multiplier


@pytest.mark.parametrize(
    ("decay", "shape"),
    [
        ("linear", lambda p: 1 - p),
        ("cosine", lambda p: 0.5 * (1 + math.cos(math.pi * p))),
        ("sqrt", lambda p: 1 - math.sqrt(p)),
    ],
)
def test_phases_follow_the_closed_form(decay, shape):
    w, s, d, f = 3, 5, 4, 0.1
    m = wsd_multiplier(w, s, d, decay, final_lr_fraction=f)
    expected = [(t + 1) / w for t in range(w)] + [1.0] * s
    expected += [f + (1 - f) * shape(j / d) for j in range(d)] + [f, f]
    assert [m(t) for t in range(w + s + d + 2)] == pytest.approx(expected)
    assert [m.phase(t) for t in (0, w, w + s - 1, w + s)] == ["warmup", "stable", "stable", "decay"]
    assert m.total_steps == w + s + d
    assert pickle.loads(pickle.dumps(m))(w + s + 1) == m(w + s + 1)


def test_no_decay_drops_to_the_final_fraction():
    m = wsd_multiplier(0, 2, 0, final_lr_fraction=0.5)
    assert [m(t) for t in range(4)] == [1.0, 1.0, 0.5, 0.5]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((-1, 2, 2), {}, "warmup_steps must be >= 0"),
        ((0, 1.5, 2), {}, "stable_steps must be an integer >= 0"),
        ((0, 2, -2), {}, "decay_steps must be >= 0"),
        ((0, 2, 2, "step"), {}, "decay must be one of"),
        ((0, 2, 2), {"final_lr_fraction": 1.5}, "final_lr_fraction"),
    ],
)
def test_bad_arguments_name_the_argument(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        wsd_multiplier(*args, **kwargs)


def test_decays_are_listed():
    assert WSD_DECAYS == ("linear", "cosine", "sqrt")
