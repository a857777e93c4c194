"""The learning-rate schedules and the budget they follow, against values computed by hand."""
import math

import pytest

from charrnn.configs import TrainConfig
from charrnn.schedule import MEASURE_FROM, MEASURE_OVER, Budget, auto_lr, factor, peak, planned_epochs
from charrnn.train import TrainState


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


def test_auto_lr_is_the_short_budgets_rate_up_to_10_epochs_the_long_ones_from_16_and_log_linear_between():
    cosine, char_rnn = TrainConfig(lr_schedule="cosine"), TrainConfig(lr_schedule="char-rnn")
    assert [auto_lr(cosine, e) for e in (1, 10, 16, 100)] == [3e-3, 3e-3, 2e-3, 2e-3]
    assert auto_lr(cosine, math.sqrt(10 * 16)) == pytest.approx(math.sqrt(3e-3 * 2e-3), rel=1e-3)  # halfway in logs
    assert 2e-3 < auto_lr(cosine, 15) < auto_lr(cosine, 11) < 3e-3
    assert auto_lr(char_rnn, 1) == 2e-3  # char-rnn's own rate, whatever the budget


def test_a_budget_in_updates_has_its_epochs_planned_and_max_time_alone_has_none_before_the_run():
    assert planned_epochs(TrainConfig(epochs=40, max_steps=400), steps_per_epoch=50) == 8
    assert planned_epochs(TrainConfig(epochs=3, max_steps=400, max_time=60.0), 50) == 3  # the epochs end first
    assert planned_epochs(TrainConfig(epochs=40), 50) == 40
    assert planned_epochs(TrainConfig(epochs=40, max_time=60.0), 50) is None  # the run's speed decides


def test_auto_lr_is_chosen_at_the_start_for_a_budget_in_updates():
    state, budget = TrainState(), Budget(TrainConfig(epochs=40, max_steps=400), steps_per_epoch=50)  # 8 epochs
    assert peak(budget.cfg, state.peak_lr) == 2e-3  # before it is chosen: the long budgets' rate
    assert not budget.choose_lr(state) and state.peak_lr is None  # not before the budget is measured
    assert budget.measure(state, seconds=0.0) and budget.epochs == 8
    assert budget.choose_lr(state) and state.peak_lr == 3e-3
    assert not budget.measure(state, seconds=1.0) and not budget.choose_lr(state) and state.peak_lr == 3e-3  # once
    assert state.lr(budget.cfg) == pytest.approx(3e-3 / 100)  # the first update's warm-up: 1/100 of it
    given = TrainState()
    fixed = Budget(TrainConfig(lr=0.5), 50)
    assert fixed.measure(given, 0.0) and not fixed.choose_lr(given) and given.peak_lr is None
    assert peak(TrainConfig(lr=0.5), 3e-3) == 0.5  # a rate given is the rate


def test_for_max_time_alone_auto_lr_is_chosen_from_the_speed_of_timed_updates():
    cfg = TrainConfig(epochs=50, max_time=100.0)
    budget, state = Budget(cfg, steps_per_epoch=10, step=30), TrainState(step=30)  # a resumed run, at update 30
    chosen = []
    for step in range(30, 30 + MEASURE_FROM + MEASURE_OVER + 1):
        state.step = step
        seconds = 7.0 if step < 30 + MEASURE_FROM else 7.0 + 0.25 * (step - 30 - MEASURE_FROM)  # 4 updates/s
        chosen.append(budget.measure(state, seconds) and budget.choose_lr(state))
    assert chosen == [False] * (MEASURE_FROM + MEASURE_OVER) + [True]
    seconds = 7.0 + 0.25 * MEASURE_OVER
    assert budget.epochs == pytest.approx((state.step + 4 * (100.0 - seconds)) / 10)  # 4 updates/s for the rest
    assert state.peak_lr == auto_lr(cfg, budget.epochs)
    short = Budget(TrainConfig(epochs=50, max_time=1.0), steps_per_epoch=10)
    state = TrainState()
    for step in range(MEASURE_FROM + MEASURE_OVER + 1):
        state.step = step
        short.measure(state, 0.02 * step) and short.choose_lr(state)  # 50 updates/s: 5 epochs in the second
    assert state.peak_lr == 3e-3 and short.epochs < 10  # a second's budget: the short budgets' rate
