"""lars_param_groups: biases and normalisation weights excluded, the rest decayed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from batchlab.optim import LAMB, LARS, lars_param_groups


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3)
        self.bn = nn.BatchNorm1d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.ln = nn.LayerNorm((4, 6))  # 2-D weight: excluded as a norm layer, not by shape
        self.frozen = nn.Linear(24, 24)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(24, 3, bias=False)
        self.tied = self.head  # the same parameters reachable twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(self.gn(self.bn(self.conv(x))))
        return self.head(self.frozen(h.flatten(1)))


def ids(params):
    return {id(p) for p in params}


def test_biases_and_norm_weights_are_excluded_without_weight_decay():
    model = Net()
    decayed, excluded = lars_param_groups(model, weight_decay=5e-4)
    assert decayed["weight_decay"] == 5e-4 and not decayed.get("lars_exclude", False)
    assert ids(decayed["params"]) == ids([model.conv.weight, model.head.weight])
    assert excluded["lars_exclude"] is True and excluded["weight_decay"] == 0.0
    norm_params = [*model.bn.parameters(), *model.gn.parameters(), *model.ln.parameters()]
    assert ids(excluded["params"]) == ids([model.conv.bias, *norm_params])


def test_frozen_and_shared_parameters_appear_at_most_once():
    model = Net()
    grouped = [p for group in lars_param_groups(model, 0.0) for p in group["params"]]
    assert len(grouped) == len(ids(grouped))
    assert not ids(grouped) & ids(model.frozen.parameters())


def test_groups_without_members_are_omitted():
    groups = lars_param_groups(nn.Linear(3, 2, bias=False), 1e-4)
    assert [len(g["params"]) for g in groups] == [1]


@pytest.mark.parametrize("optimizer", [LARS, LAMB])
def test_param_groups_drive_lars_and_lamb(optimizer):
    model = Net()
    opt = optimizer(lars_param_groups(model, 1e-4), lr=0.01)
    model(torch.randn(8, 1, 8)).square().mean().backward()
    opt.step()
    assert [g["lars_exclude"] for g in opt.param_groups] == [False, True]


def test_lars_param_groups_rejects_negative_weight_decay():
    with pytest.raises(ValueError, match="weight_decay"):
        lars_param_groups(nn.Linear(2, 2), -1.0)
