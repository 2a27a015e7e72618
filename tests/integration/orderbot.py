"""Running the example application ``tests/apps/orderbot`` inside a version environment.

Its own code, as the app itself runs it (``python -m orderbot.seed``), with only its
``src/`` on the path: the tests then read what it left with the tool.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from migrator import envs

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "orderbot"
APP_SRC = APP_DIR / "src"
#: Variables of the test process the app must not inherit.
HIDDEN = ("PYTHONPATH", "ORDERBOT_TRACE", "ORDERBOT_FAIL_STOCK", "LANGGRAPH_AES_KEY")


def run_orderbot(
    env: envs.VersionEnv, *args: str, extra_env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``python -m orderbot.seed ARGS`` in ``env``; its JSON summary (``{}`` if none)."""
    child = {k: v for k, v in os.environ.items() if k not in HIDDEN}
    child["PYTHONPATH"] = str(APP_SRC)
    child.update(extra_env or {})
    proc = subprocess.run(
        [str(env.python), "-m", "orderbot.seed", *args],
        env=child,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout)) if proc.stdout.strip() else {}
