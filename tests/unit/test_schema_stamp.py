"""Every schema the tool creates or keeps carries the same time suffix."""

from __future__ import annotations

import re

from migrator.dumprestore.common import OLD_PREFIX, SHADOW_PREFIX
from migrator.execute.model import PRE_MIGRATE_PREFIX
from migrator.seeding.shadow import SEED_SHADOW_PREFIX
from migrator.swap import schema_stamp


def test_one_sortable_stamp_that_fits_every_prefix_in_an_identifier():
    first, second = schema_stamp(), schema_stamp()
    assert re.fullmatch(r"\d{8}_\d{6}_\d{6}", first), first
    assert first <= second  # names sort by time
    for prefix in (OLD_PREFIX, SHADOW_PREFIX, PRE_MIGRATE_PREFIX, SEED_SHADOW_PREFIX):
        assert len(prefix + first) <= 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1)
