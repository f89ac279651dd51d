"""The console's screens, one module each."""

from console.screens.announcements import AnnouncementsScreen
from console.screens.compose import ComposeScreen
from console.screens.confirm import ConfirmScreen
from console.screens.detail import AnnouncementScreen
from console.screens.employees import EmployeesScreen
from console.screens.inbox import InboxScreen

__all__ = [
    "AnnouncementScreen",
    "AnnouncementsScreen",
    "ComposeScreen",
    "ConfirmScreen",
    "EmployeesScreen",
    "InboxScreen",
]
