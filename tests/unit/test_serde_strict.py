"""Strict-msgpack rehearsal and scan-types merging (pure parts, issue 14)."""

from __future__ import annotations

import json

import pytest

from migrator.errors import ConfigError
from migrator.report import Check
from migrator.serde.scan import merge
from migrator.serde.strict import (
    StrictMode,
    annotate_checks,
    mode_from_flags,
    parse_allow,
    use_strict,
    worker_env,
)


def test_allow_module_takes_dotted_or_colon_class_names() -> None:
    assert parse_allow(["shop.models.Order", "shop.models:Status", "shop.models.Order"]) == (
        ("shop.models", "Order"),
        ("shop.models", "Status"),
    )
    for bad in ("Order", "shop.models.", "shop models.Order", ""):
        with pytest.raises(ConfigError):
            parse_allow([bad])


def test_an_allowlist_implies_strict_and_reaches_only_rehearsing_workers() -> None:
    assert mode_from_flags(False, []) is None
    assert mode_from_flags(True, []) == StrictMode()
    mode = mode_from_flags(False, ["a.B"])
    assert mode == StrictMode((("a", "B"),))
    assert worker_env() == {}
    with use_strict(mode):
        env = worker_env()
    assert env["LANGGRAPH_STRICT_MSGPACK"] == "true"
    assert json.loads(env["LANGGRAPH_MIGRATOR_WORKER_STRICT"]) == {"allow": [["a", "B"]]}
    assert worker_env() == {}


def _drift(thread: str, cls: str | None) -> Check:
    diffs = (
        ()
        if cls is None
        else (
            {
                "path": f'threads["{thread}"].x',
                "severity": "breaking",
                "hazard": "H-STRICT-MSGPACK",
                "old": {"__type__": "pydantic", "class": cls},
                "new": {"sku": "?"},
            },
        )
    )
    return Check(
        "drift", "fail" if cls else "pass", "n breaking", thread_id=thread, differences=diffs
    )


def test_annotate_names_types_per_thread_and_gives_one_verdict() -> None:
    snapshot = {
        "threads": {"t1": {}, "t2": {}},
        "strict": {"supported": True, "events_supported": True},
        "serde_events": {"t1": {"msgpack_blocked:shop.Order": 3}},
    }
    with use_strict(StrictMode()):
        out = annotate_checks([_drift("t1", "shop.Order"), _drift("t2", None)], snapshot, "v")
    assert out[0].summary.startswith("strict msgpack degrades shop.Order (H-STRICT-MSGPACK)")
    assert out[0].details["serde_events"] == {"msgpack_blocked:shop.Order": 3}
    assert out[1].summary == "n breaking"
    verdict = out[-1]
    assert verdict.check == "strict-msgpack" and verdict.status == "fail"
    assert verdict.details["degraded"] == {"t1": ["shop.Order"]}
    assert verdict.details["blocked"] == ["shop.Order"]
    with use_strict(StrictMode((("shop", "Order"),))):
        clean = annotate_checks([_drift("t2", None)], snapshot, "v")
    assert clean[-1].status == "pass"
    assert annotate_checks([_drift("t2", None)], snapshot) == [_drift("t2", None)]  # not rehearsing


def test_scan_shards_merge_counts_and_the_first_example() -> None:
    entry = {
        "type": "shop.Order",
        "module": "shop",
        "name": "Order",
        "method": None,
        "kind": "pydantic v2",
        "source": "blob",
        "imports": True,
        "strict": "allowlist",
    }
    a = {"types": [{**entry, "count": 2, "threads": 1, "example_thread": "t9"}], "rows": 5}
    b = {
        "types": [{**entry, "count": 3, "threads": 2, "example_thread": "t1"}],
        "rows": 7,
        "encrypted": {"aes": 4},
        "plaintext_rows": 3,
    }
    scan = merge("v", [{**a, "strict_supported": True}, {**b, "strict_supported": True}])
    (t,) = scan.types
    assert (t["count"], t["threads"], t["example_thread"]) == (5, 3, "t1")
    assert scan.encrypted == {"aes": 4} and scan.rows == 12
    assert scan.allowed_msgpack_modules() == "allowed_msgpack_modules=[('shop', 'Order')]"
    assert scan.allow_flags() == "--allow-module shop.Order"
    assert "strict: allowlist" in scan.render_text()


def test_scan_leaves_the_tools_own_canary_classes_out_of_the_apps_setting() -> None:
    def entry(module: str, name: str) -> dict:
        return {
            "type": f"{module}.{name}",
            "module": module,
            "name": name,
            "method": None,
            "kind": "pydantic v2",
            "source": "blob",
            "imports": True,
            "strict": "allowlist",
            "count": 1,
            "threads": 1,
            "example_thread": "t1",
        }

    canary = entry("migrator.worker.canaries.rich", "Ticket")
    shard = {"types": [entry("shop", "Order"), canary], "rows": 2, "strict_supported": True}
    scan = merge("v", [shard])
    assert scan.allowlist == [("shop", "Order")]
    assert scan.allow_flags() == "--allow-module shop.Order"
    assert scan.tool_types == ["migrator.worker.canaries.rich.Ticket"]
    assert scan.to_dict()["degraded_without_allowlist"] == ["shop.Order"]
    assert "1 type(s) belong to langgraph-migrator's canary threads" in scan.render_text()
