"""Every optimizer name in the factory builds from a config and takes a step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from batchlab.optim import (
    LAMB,
    LARS,
    OPTIMIZER_HPARAMS,
    OPTIMIZERS,
    UnknownOptimizerError,
    build_optimizer,
    lars_param_groups,
)

EXPECTED_TYPES = {
    "sgd": torch.optim.SGD,
    "momentum": torch.optim.SGD,
    "nesterov": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "lars": LARS,
    "lamb": LAMB,
}

# A value for every hyperparameter any optimizer accepts.
VALUES = {
    "lr": 0.01,
    "momentum": 0.8,
    "weight_decay": 1e-4,
    "beta1": 0.85,
    "beta2": 0.99,
    "eps": 1e-7,
    "trust_coefficient": 0.002,
}

GROUP_KEYS = {
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "eps": "eps",
    "trust_coefficient": "trust_coefficient",
}


def test_every_factory_name_has_an_expected_type():
    assert set(OPTIMIZERS) == set(EXPECTED_TYPES)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_builds_from_config_with_all_its_hparams_and_steps(name):
    model = nn.Linear(4, 2)
    hparams = {key: VALUES[key] for key in OPTIMIZER_HPARAMS[name]}
    optimizer = build_optimizer(name, model.parameters(), hparams)
    assert type(optimizer) is EXPECTED_TYPES[name]
    group = optimizer.param_groups[0]
    assert group["lr"] == VALUES["lr"]
    for key, group_key in GROUP_KEYS.items():
        if key in hparams:
            assert group[group_key] == VALUES[key]
    if "beta1" in hparams:
        assert tuple(group["betas"]) == (VALUES["beta1"], VALUES["beta2"])
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(8, 4)).square().mean().backward()
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_builds_from_lr_alone(name):
    assert isinstance(
        build_optimizer(name, nn.Linear(2, 2).parameters(), {"lr": 0.1}), torch.optim.Optimizer
    )


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_lars_and_lamb_build_from_param_groups(name):
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    optimizer = build_optimizer(name, lars_param_groups(model, 1e-3), {"lr": 0.1})
    assert [g["lars_exclude"] for g in optimizer.param_groups] == [False, True]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-3, 0.0]


@pytest.mark.parametrize(
    ("name", "hparams", "match"),
    [
        ("lars", {"lr": 0.1, "trust_coefficient": 0.0}, "trust_coefficient"),
        ("lars", {"lr": -0.1}, "lr"),
        ("lamb", {"lr": 0.1, "beta2": 1.0}, "betas"),
        ("lars", {"lr": 0.1, "beta1": 0.9}, "does not take beta1"),
        ("lamb", {"eps": 1e-6}, "learning rate"),
    ],
)
def test_factory_rejects_invalid_hparams(name, hparams, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(name, nn.Linear(2, 2).parameters(), hparams)


def test_factory_rejects_unknown_names():
    with pytest.raises(UnknownOptimizerError, match="lars"):
        build_optimizer("lion", nn.Linear(2, 2).parameters(), {"lr": 0.1})
