"""The training loop learns, is deterministic for a seed, and gives bn and dropout their training semantics."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from featcli.engine.network import Network
from featcli.train.fit import FitOptions, confusion_matrix, fit, split
from tests.train.conftest import STACK, plan_for


def test_the_loss_falls_and_accuracy_beats_chance(small: Any) -> None:
    net = Network(plan_for(STACK, small.input_shape))
    result = fit(net, small, FitOptions(epochs=3, lr=1e-2, batch_size=16))
    losses = [e.train_loss for e in result.history]
    assert losses[-1] < 0.7 * losses[0], losses
    assert result.final.val_acc > 0.6  # chance is 0.25
    assert result.confusion.sum() == len(result.val_index) == 80
    assert result.confusion.trace() == round(result.final.val_acc * 80)


def test_the_same_seed_gives_the_same_weights(small: Any) -> None:
    stack = ("conv:out=4,k=3,p=1", "bn", "relu", "dropout:p=0.3", "maxpool:k=4", "flatten", "linear:out=4")

    part = dataclasses.replace(small, x=small.x[:160], y=small.y[:160])

    def weights(seed: int) -> dict[str, torch.Tensor]:
        net = Network(plan_for(stack, small.input_shape, seed=seed))
        fit(net, part, FitOptions(epochs=1, seed=seed, batch_size=32))
        return net.state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["s1.weight"], c["s1.weight"])


def test_split_is_stratified_and_deterministic() -> None:
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    tr, va = split(y, 0.2, 7)
    assert sorted(torch.bincount(y[va]).tolist()) == [4, 6, 10]
    assert set(tr.tolist()).isdisjoint(va.tolist()) and len(tr) + len(va) == 100
    assert torch.equal(split(y, 0.2, 7)[1], va) and not torch.equal(split(y, 0.2, 8)[1], va)


def test_bn_trains_on_batch_statistics_and_runs_on_running_ones(small: Any) -> None:
    net = Network(plan_for(("conv:out=2,k=3", "bn", "gap", "flatten", "linear:out=4"), small.input_shape))
    bn = net.s2
    assert isinstance(bn, torch.nn.BatchNorm2d)
    fit(net, small, FitOptions(epochs=1, batch_size=50))
    assert int(bn.num_batches_tracked) == 7  # 320 training images in batches of 50
    assert not torch.allclose(bn.running_mean, torch.zeros(2))
    x = small.x[:5]
    y = net.s1(x)
    ref = (y - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)
    ref = ref * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
    with torch.no_grad():
        torch.testing.assert_close(bn(y), ref)  # eval mode after fit: running statistics


def test_dropout_drops_in_training_only(small: Any) -> None:
    net = Network(plan_for(("flatten", "dropout:p=0.5", "linear:out=4"), small.input_shape))
    x = small.x[:8]
    with torch.no_grad():
        net.train()
        dropped = net.s2(x.flatten(1))
        net.eval()
        kept = net.s2(x.flatten(1))
    assert torch.equal(kept, x.flatten(1))
    assert 0.3 < float((dropped == 0).float().mean()) < 0.7


def test_softmax_last_trains_on_log_probabilities(small: Any) -> None:
    net = Network(plan_for((*STACK, "softmax"), small.input_shape))
    result = fit(net, small, FitOptions(epochs=2, lr=1e-2, batch_size=16))
    assert result.final.val_acc > 0.4 and result.history[-1].train_loss < result.history[0].train_loss


def test_confusion_matrix_counts_true_rows_predicted_columns() -> None:
    m = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize(("field", "value"), [("epochs", 0), ("lr", 0.0), ("val_split", 1.0), ("weight_decay", -1.0)])
def test_bad_options_are_refused(field: str, value: Any) -> None:
    from featcli.errors import UsageError

    with pytest.raises(UsageError, match=field.replace("_", "-")):
        FitOptions(**{field: value})
