"""``--accept-hazard``: data hazards an operator accepts for the stored threads they reach."""

from __future__ import annotations

from collections.abc import Iterable

from migrator.errors import ConfigError
from migrator.plan.blast import DATA_HAZARDS


def check_hazard_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """The ids, upper-cased and checked against the data hazards plan counts.

    Raises:
        ConfigError: An id plan does not count (exit 2), e.g. a typo.
    """
    out: list[str] = []
    for raw in ids:
        hazard = raw.strip().upper()
        if hazard not in DATA_HAZARDS:
            raise ConfigError(
                f"--accept-hazard {raw!r} is not a data hazard plan counts.",
                hint=f"one of {', '.join(sorted(DATA_HAZARDS))}",
            )
        if hazard not in out:
            out.append(hazard)
    return tuple(out)
