"""The check of a source's `schedule`: the cron expressions Dagster accepts and that can fire. By hand because
Dagster's validator (its vendored croniter) cannot be imported without dagster."""

from __future__ import annotations

import re


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
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


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


def _cron_field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """The values one field selects (`?` and `*` alike); `L` (last day) counts as the 28th, `mon#2` as monday."""
    out: set[int] = set()
    for item in text.split(","):
        if item == "?" and field in ("day of month", "day of week"):
            item = "*"
        if item == "l" and field == "day of month":
            out.add(28)
            continue
        nth = re.match(r"^([0-9a-z]+)#([0-9]+)$", item) if field == "day of week" else None
        if nth:
            if not 1 <= int(nth.group(2)) <= 5:
                raise _CronError(f"{item!r}: the week of the month after '#' must be 1-5")
            out.add(_cron_value(nth.group(1), field, low, high, names))
            continue
        m = _CRON_ITEM.match(item)
        if not m:
            raise _CronError(f"{field} {item!r} is not a value, a range a-b, '*' or a step like */15")
        star, a, b, step = m.groups()
        first = low if star else _cron_value(a, field, low, high, names)
        last = high if star or (step and not b) else _cron_value(b or a, field, low, high, names)
        if step is not None and int(step) == 0:
            raise _CronError(f"{field} {item!r}: a step must be 1 or more")
        span = range(first, last + 1) if first <= last else [*range(first, high + 1), *range(low, last + 1)]
        out.update(list(span)[:: int(step or 1)])
    return out


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
    problems, sets = [], []
    for text, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        try:
            sets.append(_cron_field(text, field, low, high, names))
        except _CronError as exc:
            problems.append(str(exc))
    if problems:
        return f"{'; '.join(problems)} in {expr!r}"
    days, months = sets[2], sets[3]
    # With a day of week too, cron fires on either; with only days of the month, one must exist in a month.
    if fields[4] in ("*", "?") and min(days) > max(_MONTH_DAYS[m - 1] for m in months):
        return f"{expr!r} never fires: no month it names has day {min(days)}"
    return None
