"""The learning-rate schedules and the budget they follow, against values computed by hand."""
import math

import pytest

from charrnn.configs import TrainConfig
from charrnn.schedule import Budget, factor


def test_char_rnn_decays_once_per_epoch_after_lr_decay_after():
    cfg = TrainConfig(lr_schedule="char-rnn", lr_decay=0.5, lr_decay_after=2)
    assert [factor(cfg, 123, epoch, 0.7) for epoch in range(5)] == [1, 1, 0.5, 0.25, 0.125]


def test_cosine_warms_up_then_falls_to_the_floor():
    cfg = TrainConfig(lr_schedule="cosine", warmup=4, lr_floor=0.1)
    assert [factor(cfg, step, 0, 0.0) for step in range(5)] == [0.25, 0.5, 0.75, 1, 1]
    assert factor(cfg, 10, 3, 0.5) == pytest.approx(0.55)  # halfway: (1 + floor) / 2
    assert factor(cfg, 10, 3, 1.0) == pytest.approx(0.1) == factor(cfg, 10, 3, 1.5)  # the floor, and no further
    assert factor(cfg, 10, 0, 0.25) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert factor(TrainConfig(lr_schedule="cosine", warmup=0), 0, 0, 0.0) == 1  # no warm-up
    assert factor(cfg, 1, 0, 0.25) == pytest.approx(0.5 * factor(cfg, 10, 0, 0.25))  # the ramp multiplies the cosine


def test_the_budget_is_max_steps_else_the_epochs():
    budget = Budget(TrainConfig(epochs=3, max_steps=100, max_time=60.0), steps_per_epoch=50)
    assert budget.total_steps == 100 and not budget.timed()
    assert budget.progress(25, seconds=59.0) == 0.25  # --max-steps given: the clock is ignored
    assert Budget(TrainConfig(epochs=3, max_steps=1000), 50).progress(75, 0) == 0.5  # the epochs end first
    assert Budget(TrainConfig(epochs=4), 50).progress(50, 1e6) == 0.25


def test_with_max_time_alone_the_budget_is_the_time_fraction():
    budget = Budget(TrainConfig(epochs=4, max_time=60.0), steps_per_epoch=50)
    assert budget.timed() and budget.progress(10, 15.0) == 0.25
    assert budget.progress(150, 15.0) == 0.75  # unless the epochs run out first
    assert budget.progress(10, 90.0) == 1.0
    resumed = Budget(TrainConfig(epochs=4, max_time=60.0), 50, progress=0.5)  # a checkpoint at half the schedule
    assert resumed.progress(10, 0.0) == 0.5 and resumed.progress(10, 30.0) == 0.75  # the rest over the new budget
