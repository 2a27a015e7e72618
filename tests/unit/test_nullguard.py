"""A stored value whose class does not import is an error, never None (H-UNDECODABLE-NULL)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from migrator.worker.nullguard import GuardedSerde, UndecodableValueError

APP = """
import dataclasses, enum
import pydantic

class Colour(enum.Enum):
    RED = "red"

class Order(pydantic.BaseModel):
    sku: str
    qty: int

@dataclasses.dataclass
class Shipment:
    carrier: str
"""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("guard_app")


@pytest.fixture(scope="module")
def stored(app_dir: Path) -> dict[str, tuple[str, bytes]]:
    """The app's values as the saver stores them, serialized in a process that has the app."""
    tmp_path = app_dir
    (tmp_path / "guard_app.py").write_text(APP)
    script = textwrap.dedent(
        """
        import pickle, sys
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
        import guard_app as a
        s = JsonPlusSerializer()
        values = {
            "enum": a.Colour.RED,
            "model": a.Order(sku="x", qty=2),
            "dataclass": a.Shipment(carrier="ups"),
            "nested": {"orders": [a.Order(sku="y", qty=1)], "n": 3},
            "plain": {"n": [1, 2, "x"]},
        }
        sys.stdout.buffer.write(pickle.dumps({k: s.dumps_typed(v) for k, v in values.items()}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, check=True
    ).stdout
    import pickle

    return pickle.loads(out)  # our own subprocess's output, not a file


@pytest.mark.parametrize("name", ["enum", "model", "dataclass", "nested"])
def test_unimportable_class_raises_where_the_serializer_would_degrade(
    stored: dict[str, tuple[str, bytes]], name: str
) -> None:
    plain = JsonPlusSerializer().loads_typed(stored[name])
    # What the hazard looks like: no exception, and not the app's object.
    assert type(plain).__module__ != "guard_app"
    with pytest.raises(UndecodableValueError, match=r"guard_app\.(Colour|Order|Shipment)"):
        GuardedSerde(JsonPlusSerializer()).loads_typed(stored[name])


def test_importable_classes_and_plain_values_load(
    stored: dict[str, tuple[str, bytes]], app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guarded = GuardedSerde(JsonPlusSerializer())
    assert guarded.loads_typed(stored["plain"]) == {"n": [1, 2, "x"]}
    monkeypatch.syspath_prepend(str(app_dir))
    assert type(guarded.loads_typed(stored["model"])).__name__ == "Order"
    assert guarded.loads_typed(stored["enum"]).value == "red"
