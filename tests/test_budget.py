"""The degradation policy: a defined order down on overruns, back up when load drops."""

from edge.pipeline.budget import BudgetPolicy, Level


def policy(**kw):
    return BudgetPolicy(0.1, **({"overruns_to_degrade": 2, "overrun_window": 4,
                                 "recover_after": 3, "recover_fraction": 0.5} | kw))


def test_degrades_in_order_then_stops_at_no_face():
    p = policy()
    levels = [p.observe(0.2).level for _ in range(8)]
    assert levels == [Level.FULL, Level.REUSE_BOX, Level.REUSE_BOX, Level.FACE_ALTERNATE,
                      Level.FACE_ALTERNATE, Level.NO_FACE, Level.NO_FACE, Level.NO_FACE]
    assert p.overruns == 8 and p.degradations == 3


def test_isolated_overruns_are_tolerated():
    p = policy()
    for _ in range(10):
        assert p.observe(0.2).overrun
        for _ in range(3):
            p.observe(0.01)
    assert p.level == Level.FULL and p.overruns == 10 and p.degradations == 0


def test_overrunning_every_other_cycle_still_degrades():
    p = policy()
    for _ in range(4):
        p.observe(0.2)
        p.observe(0.01)
    assert p.level > Level.FULL


def test_recovers_one_level_per_quiet_streak():
    p = policy()
    for _ in range(6):
        p.observe(0.2)
    assert p.level == Level.NO_FACE
    steps = [p.observe(0.02) for _ in range(9)]
    assert [s.level for s in steps if s.changed] == [Level.FACE_ALTERNATE, Level.REUSE_BOX,
                                                      Level.FULL]
    assert p.recoveries == 3


def test_busy_but_in_budget_cycles_do_not_recover():
    p = policy()
    for _ in range(2):
        p.observe(0.2)
    for _ in range(20):
        p.observe(0.08)  # under the deadline, over recover_fraction * deadline
    assert p.level == Level.REUSE_BOX


def test_plans_per_level():
    p = policy()
    assert p.plan(have_box=True, have_face_result=True).detect  # full: always detect
    p.level = Level.REUSE_BOX
    assert not p.plan(have_box=True, have_face_result=True).detect
    assert p.plan(have_box=False, have_face_result=False).detect  # nothing to reuse
    p.level = Level.FACE_ALTERNATE
    classify = []
    for _ in range(4):
        classify.append(p.plan(have_box=True, have_face_result=True).classify_face)
        p.observe(0.07)
    assert classify == [True, False, True, False]
    p.level = Level.NO_FACE
    assert not p.plan(have_box=True, have_face_result=True).use_face
