"""The app's own state types: a pydantic model, an Enum and a dataclass.

They are stored inside checkpoints, so a process that reads this app's threads
must be able to import this module (H-UNDECODABLE-NULL).
"""

from __future__ import annotations

import dataclasses
import enum

from pydantic import BaseModel


class Status(enum.Enum):
    """Where an order or a return stands (a plain Enum with string values)."""

    NEW = "new"
    PRICED = "priced"
    RESERVED = "reserved"
    SHIPPED = "shipped"
    RETURN_REQUESTED = "return_requested"
    INSPECTED = "inspected"
    APPROVED = "approved"
    REFUNDED = "refunded"


class Order(BaseModel):
    """What the customer ordered."""

    sku: str
    qty: int
    note: str | None = None


@dataclasses.dataclass
class Shipment:
    """Set by the ``ship`` node once the order is priced and reserved."""

    carrier: str
    tracking: str
    parcels: int = 1
