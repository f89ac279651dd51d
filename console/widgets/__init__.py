"""Reusable console widgets."""

from console.widgets.connection import ConnectionIndicator
from console.widgets.progress import delivery_bar
from console.widgets.sender import SenderIndicator

__all__ = ["ConnectionIndicator", "SenderIndicator", "delivery_bar"]
