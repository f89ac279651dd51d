"""The export dialog: where to save the deliveries CSV, masked or full phones; saves it, or says why not."""

from __future__ import annotations

from pathlib import Path

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label

from console.api import ApiError, ApiUnreachable
from console.export import default_csv_path
from console.screens.base import ApiScreen, Session


def destination(typed: str, announcement_id: int) -> Path:
    """The file to write: '~' expanded; a folder gets the default file name inside it; nothing typed, the default."""
    path = Path(typed.strip() or default_csv_path(announcement_id)).expanduser()
    if path.is_dir():
        path /= Path(default_csv_path(announcement_id)).name
    return path


def os_error_text(path: Path, exc: OSError) -> str:
    """Why `path` could not be written, in the operator's words."""
    if isinstance(exc, FileNotFoundError):
        return f"Cannot write {path}: the folder {path.parent} does not exist."
    if isinstance(exc, PermissionError):
        return f"Cannot write {path}: permission denied."
    if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        return f"Cannot write {path}: {exc.strerror or 'not a file path'}."
    return f"Cannot write {path}: {exc.strerror or exc}."


# ApiScreen first so that its __init__ takes the session (as ComposeScreen; app.tcss restates the modal look).
class ExportScreen(ApiScreen[tuple[int, Path] | None], ModalScreen[tuple[int, Path] | None]):
    """Save the deliveries CSV; dismisses with (rows, path) once saved, None when closed."""

    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+s", "export", "Save", priority=True),
        Binding("escape", "close", "Close"),
    ]

    path_input = getters.query_one("#export-path", Input)
    full_phones = getters.query_one("#export-full-phones", Checkbox)
    error_label = getters.query_one("#export-error", Label)
    save_button = getters.query_one("#export-save", Button)

    def __init__(self, session: Session, announcement_id: int) -> None:
        super().__init__(session)
        self.announcement_id = announcement_id
        self.saving = False

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog"):
            yield Label(f"Export the deliveries of announcement #{self.announcement_id} (CSV)", id="export-title")
            yield Label("Save to (a file, or a folder)", classes="field-label")
            yield Input(default_csv_path(self.announcement_id), id="export-path")
            yield Checkbox("Full phone numbers (otherwise masked)", id="export-full-phones")
            # Not markup: paths and the server's words may hold "[…]".
            yield Label("", id="export-error", classes="field-error", markup=False)
            with Horizontal(id="export-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="export-save")
                yield Button("Close (esc)", id="export-close")

    def on_mount(self) -> None:
        self.path_input.focus()

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export-save")
    def action_export(self) -> None:
        """Download the CSV to the path typed (one download at a time)."""
        if self.saving:
            return
        self.saving = True
        self.save_button.disabled = True
        self.error_label.update("Saving…")
        self.download(destination(self.path_input.value, self.announcement_id), self.full_phones.value)

    @work(exclusive=True, group="export", exit_on_error=False)
    async def download(self, path: Path, full_phones: bool) -> None:
        """Stream GET /announcements/{id}/deliveries.csv into `path`; failures are said here, in the dialog."""
        try:
            rows = await self.api.export_deliveries(self.announcement_id, path, full_phones=full_phones)
        except OSError as exc:
            self.error_label.update(os_error_text(path, exc))
            return
        except ApiUnreachable as exc:
            self.error_label.update(f"Not saved: {exc}. Try again (ctrl+s).")
            raise
        except ApiError as exc:
            self.error_label.update(f"Not saved: the server answered {exc.status} {exc.title}: {exc.detail}")
            return
        finally:
            self.saving = False
            self.save_button.disabled = False
        self.dismiss((rows, path))

    @on(Button.Pressed, "#export-close")
    def action_close(self) -> None:
        """Close without saving."""
        self.dismiss(None)
