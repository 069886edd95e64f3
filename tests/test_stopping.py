"""The one stop rule of a search (grid, local and Spark feed it the same way): pure, so tested without a run."""

from hyperflow.engine.stopping import Finished, StopRule

OK, FAIL = (lambda loss: Finished(False, loss)), Finished(True, None, "diverged")


def test_goes_on_without_a_reason():
    rule = StopRule(max_consecutive_failures=3)
    assert rule.check([]) == "" and rule.check([OK(1.0), FAIL, FAIL, OK(0.5)]) == ""
    assert rule.final() == "budget" and rule.final(timed_out=True) == "timeout"


def test_failure_streak_counts_the_trailing_failures():
    rule = StopRule(max_consecutive_failures=2)
    assert rule.check([FAIL, OK(1.0), FAIL]) == ""
    reason = rule.check([OK(1.0), FAIL, FAIL])
    assert reason.startswith("2 trials failed in a row (last: diverged)") and rule.final() == reason


def test_loss_threshold_before_early_stop():
    assert StopRule(loss_threshold=0.5, early_stop=1).check([OK(0.4), OK(0.9)]) == "loss_threshold"
    assert StopRule(loss_threshold=0.3).check([OK(0.4), FAIL]) == ""


def test_early_stop_counts_trials_since_the_best():
    rule = StopRule(early_stop=2)
    assert rule.check([OK(1.0), OK(0.5), OK(0.7)]) == ""
    assert rule.check([OK(1.0), OK(0.5), OK(0.7), FAIL]) == "early_stop: 2 trials without improvement"
    assert rule.check([OK(0.5), OK(0.7), OK(0.5)]) == ""  # a tie counts from the later trial
    assert StopRule(early_stop=1).check([FAIL, FAIL]) == ""  # no loss yet: nothing to improve on


def test_timeout_from_the_clock():
    now = [100.0]
    rule = StopRule(deadline=110.0, clock=lambda: now[0])
    assert rule.check([OK(1.0)]) == ""
    now[0] = 110.0
    assert rule.check([OK(1.0)]) == "timeout" and rule.final() == "timeout"
