from __future__ import annotations

import math

import pytest
import torch

from launcher.runtime.train.optim import ModelEMA, Schedule, build_optimizer, param_groups, resolve_auto


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )


@pytest.mark.parametrize(
    "name, cls",
    [
        ("SGD", torch.optim.SGD),
        ("Adam", torch.optim.Adam),
        ("AdamW", torch.optim.AdamW),
        ("NAdam", torch.optim.NAdam),
        ("RAdam", torch.optim.RAdam),
        ("RMSProp", torch.optim.RMSprop),
    ],
)
def test_optimizer_names_map_to_torch_classes(name: str, cls: type) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    opt = build_optimizer(name, net, 0.05, 0.9, 1e-4)
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.05


def test_no_weight_decay_on_norm_layers_and_biases() -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2)
    )
    decay, no_decay = param_groups(net, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[3].weight)}
    expected = [net[0].bias, net[1].weight, net[1].bias, net[2].weight, net[2].bias, net[3].bias]
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in expected}


def test_auto_rule_depends_on_iterations() -> None:
    assert resolve_auto("auto", 0.01, 20_000, 10) == ("SGD", 0.01)
    name, lr = resolve_auto("auto", 0.01, 500, 10)
    assert name == "AdamW" and lr == pytest.approx(0.002 * 5 / 14, abs=1e-6)
    assert resolve_auto("RAdam", 0.3, 500, 10) == ("RAdam", 0.3)


@pytest.mark.parametrize("cosine", [False, True])
def test_schedule_warms_up_and_really_ends_at_lr0_times_lrf(cosine: bool) -> None:
    s = Schedule.for_run(lr0=0.1, lrf=0.05, epochs=5, steps_per_epoch=7, warmup_epochs=1, cosine=cosine)
    lrs = [s(i) for i in range(s.total)]
    assert s.total == 35 and s.warmup == 7
    assert lrs[0] < lrs[3] < lrs[6] < 0.1 and lrs[7] == pytest.approx(0.1)
    assert lrs[-1] == pytest.approx(0.1 * 0.05, rel=1e-12)
    assert all(a >= b for a, b in zip(lrs[7:], lrs[8:]))
    mid = lrs[7 + 27 // 2]  # t = 13/27, close to half-way
    assert mid == pytest.approx(0.1 * (0.05 + 0.95 * 0.5), rel=0.1)  # both shapes pass near the middle


def test_cosine_differs_from_linear() -> None:
    lin = Schedule(0.1, 0.01, 101, 0, cosine=False)
    cos = Schedule(0.1, 0.01, 101, 0, cosine=True)
    assert cos(25) > lin(25) and cos(75) < lin(75)


def test_ema_follows_the_model_with_a_ramping_decay() -> None:
    net = torch.nn.Linear(2, 1)
    ema = ModelEMA(net, decay=0.9, tau=1.0)
    before = ema.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    d = 0.9 * (1 - math.exp(-1))
    assert torch.allclose(ema.module.weight, d * before + (1 - d) * net.weight)
    assert not ema.module.weight.requires_grad


def test_ema_keeps_following_after_many_in_place_steps() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(net, decay=0.0, tau=1.0)  # decay 0: the EMA is a copy of the model
    for _ in range(3):
        with torch.no_grad():
            net[0].weight.mul_(2.0)
        net(torch.randn(4, 2))  # BatchNorm statistics and its integer counter change
        ema.update(net)
    assert torch.equal(ema.module[0].weight, net[0].weight)
    assert torch.equal(ema.module[1].running_mean, net[1].running_mean)
    assert ema.module[1].num_batches_tracked.item() == 3


def test_ema_every_n_steps_folds_the_weights_in_with_the_decay_of_n_steps() -> None:
    net = torch.nn.Linear(2, 1)
    ema = ModelEMA(net, decay=0.9, tau=1.0, every=3)
    before = ema.module.weight.clone()
    for _ in range(2):
        with torch.no_grad():
            net.weight.add_(1.0)
        ema.step(net)
    assert torch.equal(ema.module.weight, before) and ema.pending == 2  # nothing folded in yet
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.step(net)
    d = 0.9 * (1 - math.exp(-3))
    assert ema.pending == 0 and ema.updates == 3
    assert torch.allclose(ema.module.weight, d**3 * before + (1 - d**3) * net.weight)
    ema.step(net)
    ema.flush(net)  # the end of an epoch: the one pending step is folded in
    assert ema.pending == 0 and ema.updates == 4


def test_a_resumed_ema_folds_in_the_same_steps_as_an_uninterrupted_one() -> None:
    def run(net: torch.nn.Module, ema: ModelEMA, steps: range) -> None:
        for i in steps:
            with torch.no_grad():
                net.weight.add_(float(i))
            ema.step(net)

    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    whole = ModelEMA(net, decay=0.9, tau=1.0, every=4)
    run(net, whole, range(10))

    torch.manual_seed(0)
    net2 = torch.nn.Linear(2, 1)
    first = ModelEMA(net2, decay=0.9, tau=1.0, every=4)
    run(net2, first, range(6))  # stopped with two steps pending
    state = first.state_dict()
    assert state["pending"] == 2
    resumed = ModelEMA(net2, decay=0.9, tau=1.0, every=4)
    resumed.load_state_dict(state)
    run(net2, resumed, range(6, 10))
    assert torch.equal(resumed.module.weight, whole.module.weight) and resumed.pending == whole.pending == 2
