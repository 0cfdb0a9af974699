"""What the Redis handoff thread logs while handing over fails (`backend.jobs.scheduler.OutageLog`): the first
failure, then at most one line every `report_s`, and one line when it works again."""

import pytest

from backend.jobs.scheduler import OutageLog


@pytest.mark.parametrize("events,lines", [
    ([(0, "ok"), (5, "ok")], [None, None]),  # never failing: silent
    ([(0, "fail"), (5, "fail"), (10, "fail")], ["failed", None, None]),  # the first failure only
    ([(0, "fail"), (5, "fail"), (300, "fail"), (305, "fail"), (600, "fail")],
     ["failed", None, "still fails after 300 s", None, "still fails after 600 s"]),  # then every report_s
    ([(0, "fail"), (5, "fail"), (10, "ok"), (15, "ok")], ["failed", None, "works again after 10 s", None]),
    ([(0, "fail"), (10, "ok"), (20, "fail"), (25, "fail")],
     ["failed", "works again after 10 s", "failed", None]),  # a new outage starts afresh
], ids=["healthy", "first failure", "repeated every report_s", "recovery", "second outage"])
def test_outage_log(events, lines):
    clock = [0.0]
    outage = OutageLog("handing jobs to Redis", report_s=300, now=lambda: clock[0])
    seen = []
    for at, event in events:
        clock[0] = at
        seen.append(outage.failed(ConnectionError("refused")) if event == "fail" else outage.worked())
    for line, expected in zip(seen, lines):
        if expected is None:
            assert line is None
        else:
            assert line is not None and line.startswith("handing jobs to Redis") and expected in line, line
    assert len(seen) == len(lines)


def test_the_failure_names_its_cause():
    outage = OutageLog("handing jobs to Redis", now=lambda: 0.0)
    assert outage.failed(ConnectionError("Error 111 connecting to 127.0.0.1:6379")) == \
        "handing jobs to Redis failed (Error 111 connecting to 127.0.0.1:6379); retrying"
