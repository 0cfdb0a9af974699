"""The session benchmark's figures from recorded steps (bench/annotation_session.py `summarise`)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from annotation_session import WINDOW, DomainRun, Step, summarise, version_lags  # noqa: E402

DRAW = {"draw": 2}  # two boxes drawn: 14 s under the fast model
GOOD = {"accept": 2}  # two boxes verified: 3.2 s
BAD = {"delete": 2, "draw": 2}  # two wrong boxes deleted, two drawn: 19.2 s


def _run(loop, zero_shot, active_from=None):
    return DomainRun("d", [Step(i, i, None, 2, l, z, "v1" if active_from is not None and i >= active_from else None,
                                float(i)) for i, (l, z) in enumerate(zip(loop, zero_shot))])


@pytest.mark.parametrize("loop,zero_shot,active_from,saving,second_half,zs_saving,worst,first", [
    ([DRAW] * 50, [DRAW] * 50, None, 0.0, 0.0, 0.0, 0.0, None),  # nothing ever helps: 0 everywhere
    ([DRAW] * 25 + [GOOD] * 25, [DRAW] * 50, 25, 38.6, 77.1, 0.0, 77.1, 25),
    ([GOOD] * 50, [GOOD] * 50, 0, 77.1, 77.1, 77.1, 0.0, 0),
    ([GOOD] * 25 + [BAD] * 25, [GOOD] * 50, 25, 20.0, -37.1, 77.1, -114.2, 25),  # a version that serves worse
    ([DRAW] * 40 + [GOOD] * 10, [DRAW] * 50, 45, 15.4, 30.9, 0.0, 30.9, 45),  # activation in the last window
])
def test_summarise(loop, zero_shot, active_from, saving, second_half, zs_saving, worst, first):
    figures = summarise(_run(loop, zero_shot, active_from), 8.0)
    assert figures["saving_pct"] == saving and figures["saving_second_half_pct"] == second_half
    assert figures["zero_shot_saving_pct"] == zs_saving and figures["worst_window_vs_zero_shot"] == worst
    assert figures["first_activation_task"] == first and figures["windows_checked"] >= 1 and figures["tasks"] == 50
    assert WINDOW == 25


# (per step: active version, model_version shown) → tasks from each activation to the first task showing it
@pytest.mark.parametrize("steps,lags", [
    ([(None, None), ("v0001", None), ("v0001", "p-detector-v0001")], {"v0001": 1}),
    ([("v0001", "p-detector-v0001"), ("v0002", "p-detector-v0001"), ("v0003", "p-detector-v0001"),
      ("v0003", "p-detector-v0003")], {"v0001": 0, "v0002": None, "v0003": 1}),  # v0002 superseded before shown
    ([("v0001", "lite0"), ("v0001", "lite0")], {"v0001": None}),  # zero-shot kept for every label
    ([("v0001", "lite0"), ("v0001", "p-detector-v0001+lime-efficientnet-lite0")], {"v0001": 1}),  # some labels
    ([(None, "p-detector-v0001"), ("v0001", "p-detector-v0001")], {"v0001": 0}),
    ([(None, None)], {}),
])
def test_version_lags(steps, lags):
    run = [Step(i, i, shown, 1, DRAW, DRAW, active, float(i)) for i, (active, shown) in enumerate(steps)]
    assert version_lags(run) == lags
