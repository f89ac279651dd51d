"""The connection indicator: is the API reachable, is the token accepted, when did data last arrive."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from textual.reactive import reactive
from textual.widgets import Static

_LABELS = {
    "connecting": ("◌ connecting", "conn-connecting"),
    "ok": ("● connected", "conn-ok"),
    "down": ("● API unreachable", "conn-down"),
    "unauthorized": ("● token rejected", "conn-down"),
}


class ConnectionIndicator(Static):
    """Shows the app's connection state; the app sets `state` and `last_ok` after every API call."""

    DEFAULT_CSS = """
    ConnectionIndicator { width: auto; height: 1; padding: 0 1; }
    ConnectionIndicator.conn-ok { color: $success; }
    ConnectionIndicator.conn-down { color: $error; text-style: bold; }
    ConnectionIndicator.conn-connecting { color: $warning; }
    """

    state: reactive[str] = reactive("connecting", layout=True)
    last_ok: reactive[datetime | None] = reactive(None)
    target: reactive[str] = reactive("", layout=True)

    def on_mount(self) -> None:
        # Follow the app's state (ConsoleApp.connection / .last_ok) when running inside the console.
        app = self.app
        if hasattr(app, "connection") and hasattr(app, "last_ok"):
            self.target = str(getattr(getattr(app, "api", None), "base_url", ""))
            self.tooltip = self.target
            self.watch(app, "connection", self._follow_state)
            self.watch(app, "last_ok", self._follow_last_ok)

    def _follow_state(self, state: str) -> None:
        self.state = state

    def _follow_last_ok(self, last_ok: datetime | None) -> None:
        self.last_ok = last_ok

    def render(self) -> str:
        label, _ = _LABELS.get(self.state, (self.state, "conn-down"))
        when = ""
        if self.last_ok is not None:
            # On the employer's clock, like every other time on screen (the header's clock names the zone).
            timezone = ZoneInfo(str(getattr(self.app, "timezone", "UTC")))
            when = f" · {self.last_ok.astimezone(timezone):%H:%M:%S}"
        return f"{label}{when}"

    def watch_state(self, state: str) -> None:
        """Swap the colour class with the state."""
        for _, cls in _LABELS.values():
            self.remove_class(cls)
        self.add_class(_LABELS.get(state, ("", "conn-down"))[1])
