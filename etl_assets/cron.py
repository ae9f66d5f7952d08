"""Cron, in one place: the check of a source's `schedule` (what Dagster accepts, and that it can fire) and its
ticks (for `etl_source_schedule_interval_seconds`).

By hand, because Dagster's validator and its one cron iterator (`dagster._utils.schedules`, private, over its
vendored croniter) cannot be imported without dagster, and the core does not import dagster. The ticks are
croniter's for the 5-field UTC expressions `cron_problem` accepts, its quirks included (`a-a` is the whole cycle, a
full day-of-month or day-of-week set counts as `*` only when the other day field has a `*`, restricted
day-of-month and day-of-week fire on either); test_validate.py and test_schedule_interval.py check both against
Dagster.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta


class _CronError(ValueError):
    pass


# (field, lowest, highest, names in order from `lowest`); the ranges are cron's, as Dagster's croniter reads them.
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ITEM = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$")


def _cron_value(token: str, field: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token.isdigit():
        value = int(token)
    elif token in names:
        value = low + names.index(token)
    else:
        spelled = f" or {names[0]}-{names[-1]}" if names else ""
        raise _CronError(f"{field} {token!r} is not a number {low}-{high}{spelled}")
    if not low <= value <= high:
        raise _CronError(f"{field} {value} is out of range {low}-{high}")
    return value


def _check_field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> None:
    """Refuse what Dagster would: values out of range, unknown names, malformed items; `?`, `L` (day of month)
    and `mon#2` (day of week) are cron's too."""
    for item in text.split(","):
        if (item == "?" and field in ("day of month", "day of week")) or (
            item == "l" and field == "day of month"
        ):
            continue
        nth = re.match(r"^([0-9a-z]+)#([0-9]+)$", item) if field == "day of week" else None
        if nth:
            if not 1 <= int(nth.group(2)) <= 5:
                raise _CronError(f"{item!r}: the week of the month after '#' must be 1-5")
            _cron_value(nth.group(1), field, low, high, names)
            continue
        m = _CRON_ITEM.match(item)
        if not m:
            raise _CronError(f"{field} {item!r} is not a value, a range a-b, '*' or a step like */15")
        _star, first, last, step = m.groups()
        for token in (first, last):
            if token is not None:
                _cron_value(token, field, low, high, names)
        if step is not None and int(step) == 0:
            raise _CronError(f"{field} {item!r}: a step must be 1 or more")


def cron_problem(expr: str) -> str | None:
    """Why Dagster would refuse this schedule, or why it would never fire (Dagster accepts `0 0 31 4 *`, then
    its ticks fail); None when it is fine. By hand because Dagster's validator (its vendored croniter) cannot be
    imported without dagster; test_validate.py checks that the two agree."""
    fields = expr.lower().split()
    if len(fields) != 5:
        return (
            f"expected a 5-field cron expression (minute hour day-of-month month day-of-week) like "
            f"'0 * * * *', got {expr!r}"
        )
    problems = []
    for text, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        try:
            _check_field(text, field, low, high, names)
        except _CronError as exc:
            problems.append(str(exc))
    if problems:
        return f"{'; '.join(problems)} in {expr!r}"
    try:
        fires = next(ticks(expr, datetime(2000, 1, 1, tzinfo=UTC)), None) is not None
    except (ValueError, IndexError):  # a reading croniter has and we lack: Dagster's own check decides
        return None
    if not fires:
        days = _parse(expr)[0][2]
        only_days = fields[4] in ("*", "?") and bool(days)
        return f"{expr!r} never fires" + (f": no month it names has day {min(days)}" if only_days else "")
    return None


# -- ticks: croniter's reading of the expressions cron_problem accepts --------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (lowest, highest, names from `lowest`) per field, as croniter ranges them (day of week 7 is read as 0)
_FIELDS = ((0, 59, ()), (0, 23, ()), (1, 31, ()), (1, 12, _MONTHS), (0, 6, _DAYS))
_HORIZON_DAYS = 2 * 28 * 366  # the calendar repeats within 28 years: two ticks are never further apart


def _value(token: str, field: int) -> int:
    low, _, names = _FIELDS[field]
    value = int(token) if token.isdigit() else low + names.index(token)
    return 0 if field == 4 and value == 7 else value


def _item(item: str, field: int) -> list[int]:
    """The values one comma-separated item selects, in croniter's reading of ranges and steps."""
    low, high, _ = _FIELDS[field]
    if item == "*":
        return list(range(low, high + 1))
    base, _, step_text = item.partition("/")
    step = int(step_text or 1)
    first_text, dash, last_text = base.partition("-")
    first = low if first_text == "*" else _value(first_text, field)
    last = _value(last_text, field) if dash else (high if step_text else first)
    if not dash and not step_text:
        return [first]
    if first == last:  # croniter: `sun-sun`, `5-5/2` are the whole cycle
        return list(range(low, high + 1, step))
    if first < last:
        return list(range(first, last + 1, step))
    # a range that wraps (`fri-mon`, `50-10`): to the top, then on from the bottom, the step carried over
    values = list(range(first, high + 1, step))
    skip = 0
    if values:
        whole = list(range(low, high + 1))
        taken = list(reversed(whole)).index(values[-1])
        if whole.index(values[-1]) + step > len(whole) and taken < step:
            skip = step - taken
    return values + list(range(low + skip, last + 1, step))


def _parse(cron: str) -> tuple[list[set[int]], bool, dict[int, set[int]], bool, bool]:
    """Minutes, hours, days, months, weekdays; `L` in the days; nth weekdays; whether each day field is `*`."""
    fields = cron.lower().split()
    sets: list[set[int]] = []
    last_day = False
    nth: dict[int, set[int]] = {}
    for field, text in enumerate(fields):
        text = "*" if text == "?" else text
        values: set[int] = set()
        for item in text.split(","):
            if field == 2 and item == "l":
                last_day = True
                continue
            weekday, hash_, n = item.partition("#")
            if field == 4 and hash_:
                nth.setdefault(_value(weekday, 4), set()).add(int(n))
                values.add(_value(weekday, 4))
                continue
            values.update(_item(item, field))
        sets.append(values)
    # A `*` item makes the field `*`; croniter reads a full day set as `*` too, but only when the other day field
    # has a `*` in its text (`?` does not count).
    dom_star = _has_star(fields[2]) or (len(sets[2]) + last_day == 31 and "*" in fields[4])
    dow_star = _has_star(fields[4]) or (len(sets[4]) == 7 and "*" in fields[2])
    return sets, last_day, nth, dom_star, dow_star


def _has_star(text: str) -> bool:
    return text == "?" or "*" in text.split(",")


def _fires_on(
    day: date, sets: list[set[int]], last_day: bool, nth: dict[int, set[int]], dom_star: bool, dow_star: bool
) -> bool:
    if day.month not in sets[3]:
        return False
    on_dom = day.day in sets[2] or (last_day and day.day == calendar.monthrange(day.year, day.month)[1])
    weekday = day.isoweekday() % 7
    if nth:  # only the nth weekdays; croniter keeps that rule in its day-of-month half of an either-or too
        return (day.day - 1) // 7 + 1 in nth.get(weekday, ()) and (dom_star or not dow_star or on_dom)
    on_dow = weekday in sets[4]
    if dom_star or dow_star:
        return (dom_star or on_dom) and (dow_star or on_dow)
    return on_dom or on_dow  # both restricted: either fires


def ticks(cron: str, start: datetime) -> Iterator[datetime]:
    """The UTC ticks of `cron` at or after `start`, ascending; none when it has none within the horizon."""
    sets, last_day, nth, dom_star, dow_star = _parse(cron)
    minutes, hours = sorted(sets[0]), sorted(sets[1])
    day = start.date()
    for _ in range(_HORIZON_DAYS):
        if _fires_on(day, sets, last_day, nth, dom_star, dow_star):
            for hour in hours:
                for minute in minutes:
                    tick = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if tick >= start:
                        yield tick
        day += timedelta(days=1)


def schedule_interval(cron: str) -> float | None:
    """Longest gap between two consecutive ticks within a week of ticks (a weekday-only cron spans a weekend)."""
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # fixed: the same answer on every tick
    ticks_ = ticks(cron, datetime.fromtimestamp(start, UTC))
    first = next(ticks_, None)
    if first is None:
        return None
    prev, longest = first.timestamp(), 0.0
    for tick in ticks_:
        ts = tick.timestamp()
        longest = max(longest, ts - prev)
        if ts - start > 8 * 86400:
            break
        prev = ts
    return longest or None
