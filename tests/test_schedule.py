"""The linear warm-up/decay schedule (harness/train/schedule.py): the factor by hand, equal to transformers' own at
every step, and a checkpoint of transformers' scheduler loads into it."""
import pytest
import torch

from harness.train.schedule import linear_warmup_decay


def _optimizer(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _rates(scheduler, steps):
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def test_factor_by_hand():
    # warm-up 2 of 6 steps: 0, 1/2, then (6 − s) / 4 for s = 2 … 5, and 0 from step 6 on
    assert _rates(linear_warmup_decay(_optimizer(), 2, 6), 8) == pytest.approx([0, 0.5, 1, 0.75, 0.5, 0.25, 0, 0])
    assert _rates(linear_warmup_decay(_optimizer(2.0), 0, 4), 4) == pytest.approx([2.0, 1.5, 1.0, 0.5])


@pytest.mark.parametrize("warmup, total", [(0, 10), (3, 10), (6, 100), (10, 10)])
def test_equal_to_transformers_schedule(warmup, total):
    from transformers import get_linear_schedule_with_warmup

    ours = _rates(linear_warmup_decay(_optimizer(1e-3), warmup, total), total + 2)
    theirs = _rates(get_linear_schedule_with_warmup(_optimizer(1e-3), warmup, total), total + 2)
    assert ours == theirs


def test_a_transformers_scheduler_checkpoint_loads():
    from transformers import get_linear_schedule_with_warmup

    theirs = get_linear_schedule_with_warmup(_optimizer(), 2, 10)
    _rates(theirs, 4)
    ours = linear_warmup_decay(_optimizer(), 2, 10)
    ours.load_state_dict(theirs.state_dict())
    assert ours.last_epoch == 4 and _rates(ours, 3) == _rates(theirs, 3)
