"""A yes/no modal that states the consequence before a destructive action."""

from __future__ import annotations

from textual import getters, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask before acting; dismisses with True only on an explicit yes."""

    BINDINGS = [  # noqa: RUF012  (Textual reads it as a class attribute)
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    no_button = getters.query_one("#confirm-no", Button)

    def __init__(self, title: str, consequence: str, yes_label: str = "Yes") -> None:
        super().__init__()
        self._title = title
        self._consequence = consequence
        self._yes_label = yes_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Label(self._title, id="confirm-title")
            yield Static(self._consequence, id="confirm-consequence")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self._yes_label} (y)", variant="error", id="confirm-yes")
                yield Button("No (n)", variant="primary", id="confirm-no")

    def on_mount(self) -> None:
        # The safe answer has the focus, so a stray Enter does nothing harmful.
        self.no_button.focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        """Dismiss with the operator's answer."""
        self.dismiss(yes)
