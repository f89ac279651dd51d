"""Reusable console widgets."""

from console.widgets.connection import ConnectionIndicator
from console.widgets.progress import delivery_bar

__all__ = ["ConnectionIndicator", "delivery_bar"]
