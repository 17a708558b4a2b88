"""When a completed job stops seeding (jobs.seeding): pure logic, no libtorrent."""
import pytest

from jobs.seeding import GLOBAL, OWN, UNLIMITED, SeedLimits, SessionSeedLimits, changed_limits, reason_to_stop

NO_LIMIT = SessionSeedLimits()
SESSION = SessionSeedLimits(ratio=1.0, idle_minutes=10)


@pytest.mark.parametrize("limits, session, ratio, idle, expected", [
    (SeedLimits(), NO_LIMIT, 50.0, 10**6, None),  # global mode with no global limit: seeds on
    (SeedLimits(), SESSION, 0.99, 599, None),
    (SeedLimits(), SESSION, 1.0, 0, "ratio 1 reached"),
    (SeedLimits(), SESSION, 0.5, 600, "idle for 10 min"),
    (SeedLimits(ratio=3.0, ratio_mode=OWN), SESSION, 2.5, 0, None),  # its own, higher limit
    (SeedLimits(ratio=0.0, ratio_mode=OWN), NO_LIMIT, 0.0, 0, "ratio 0 reached"),
    (SeedLimits(ratio_mode=UNLIMITED, idle_mode=UNLIMITED), SESSION, 9.0, 10**6, None),
    (SeedLimits(ratio_mode=UNLIMITED, idle_minutes=0, idle_mode=OWN), SESSION, 9.0, 0, "idle for 0 min"),
    (SeedLimits(ratio=0.0, ratio_mode=OWN), SESSION, None, 0, None),  # no metadata yet: no ratio
])
def test_each_mode_takes_the_limit_it_names(limits, session, ratio, idle, expected):
    assert reason_to_stop(limits, session, ratio, idle) == expected


def test_changes_are_checked_and_typed_and_leave_the_rest():
    limits = changed_limits(SeedLimits(), {"ratio": 1, "ratio_mode": OWN})
    assert limits == SeedLimits(ratio=1.0, ratio_mode=OWN, idle_minutes=30, idle_mode=GLOBAL)
    assert isinstance(limits.ratio, float)
    for changes, said in (({"ratio_mode": 3}, "ratio_mode must be 0"), ({"ratio": -1}, "negative"),
                          ({"idle_minutes": "5"}, "must be a number"), ({"idle_mode": True}, "number"),
                          ({"speed": 1}, "not a seeding limit")):
        with pytest.raises(ValueError, match=said):
            changed_limits(SeedLimits(), changes)


@pytest.mark.parametrize("text", [None, "", "{}", "not json", "[1, 2]", '{"ratio": 1.5, "extra": 1}'])
def test_stored_limits_read_back_or_fall_back_to_the_defaults(text):
    limits = SeedLimits.from_text(text)
    assert limits.ratio_mode == GLOBAL and limits.idle_minutes == 30
    assert SeedLimits.from_text(limits.to_text()) == limits
