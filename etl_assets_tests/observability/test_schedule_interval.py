"""The core's cron arithmetic (etl_assets/cron.py) against Dagster's own iterator, which it replaces."""

import json
from datetime import UTC, datetime
from itertools import islice

import pytest
from dagster._utils.schedules import cron_string_iterator

from etl_assets.cron import cron_problem, schedule_interval, ticks

START = datetime(2024, 1, 1, tzinfo=UTC)
CRONS = [
    "0 * * * *",
    "*/15 * * * *",
    "0 6 * * *",
    "0/15 9-17 * jan-dec mon-fri",
    "0 0 1,15 * *",
    "0 0 * * 7",
    "0 0 * * 0-7",
    "0 0 * * fri-mon",
    "5-1 * * * *",
    "0 0 L * *",
    "0 0 ? * mon#2",
    "0 0 * * MON",
    "00 0 * * *",
    "0 0 29 2 *",
    "0 0 */40 * *",
    "0 0 * 1-12/3 *",
    "0 0 * * sun/2",
    "0 0 L,15 * *",
    "0 0 * * mon#2,fri#1",
    "0 9 * * mon-fri",
    "0 0 1 * *",
    "0 0 1 1 *",
    "15,45 */2 * * *",
    "0 12 1-7 * mon",
    "0 0 31 * *",
    "0 0 * * 6,0",
    "*/7 * * * *",
    "*/90 * * * *",
    "0 0 15 * fri",
    "0 8-18/3 * * 1-5",
    "0 0 L 2 *",
    "0 0 * * 5#5",
    "0 0 29 2 1",
    "0 0 L * fri",
    "0 0 * 2 *",
    "0 0 28-31 * *",
    "0 0 30 * *",
    "5-5 * * * *",
    "59/5 * * * *",
    "0 0 * may-feb/5 *",
    "0 0 25-5/3 * *",
    "0 0 1-31 * mon",
    "0 0 1-31 * */2",
    "0 0 *,5 * mon",
    "0 0 * * sun-sun",
    "0 0 1-30,L * */3",
    "0 0 ? 6 0-6",
    "0 0 * 6 0-6",
]


def _reference(expr: str) -> float | None:
    """schedule_interval as it was, over `dagster._utils.schedules`."""
    start = START.timestamp()
    it = cron_string_iterator(start, expr, "UTC")
    prev, longest = next(it).timestamp(), 0.0
    for tick in it:
        ts = tick.timestamp()
        longest = max(longest, ts - prev)
        if ts - start > 8 * 86400:
            break
        prev = ts
    return longest or None


@pytest.mark.parametrize("expr", CRONS)
def test_ticks_and_interval_are_dagsters(expr):
    assert cron_problem(expr) is None
    expected = [t.timestamp() for t in islice(cron_string_iterator(START.timestamp(), expr, "UTC"), 12)]
    assert [t.timestamp() for t in islice(ticks(expr, START), 12)] == expected
    assert schedule_interval(expr) == _reference(expr), json.dumps(expr)
