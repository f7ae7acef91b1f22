"""One error type per thing that can go wrong for a user, with a message a person can act on."""

from __future__ import annotations


class ActivelearnError(Exception):
    """Base class: every error the public API raises on bad input or state."""


class ProjectNotFound(ActivelearnError):
    pass


class ProjectExists(ActivelearnError):
    pass


class InvalidClasses(ActivelearnError):
    pass


class UnknownLabel(ActivelearnError):
    pass


class UnknownTask(ActivelearnError):
    pass


class InvalidAnnotator(ActivelearnError):
    pass


class NotAllowed(ActivelearnError):
    """The acting user may not do this: not on the project's allow-list, or the action needs
    the lead role."""


class ImportFailed(ActivelearnError):
    """The whole source could not be read (missing folder, CSV without a path column, ...)."""


class OutsideImportRoots(ImportFailed):
    """A server path given through the browser resolves outside the configured import roots."""


class NothingToUndo(ActivelearnError):
    pass


class RoundInProgress(ActivelearnError):
    pass


class NotEnoughLabels(ActivelearnError):
    """A round was asked for before the labels can train a ranking worth serving."""


class InvalidSetting(ActivelearnError):
    pass


class NoDatabase(ActivelearnError):
    """A command that reads a database was pointed at one that does not exist."""


class ExportRefused(ActivelearnError):
    """An export would overwrite something, or could not be written whole."""


class NothingToExport(ActivelearnError):
    """An export was asked for before there is anything to export (no round, no checkpoint)."""


class LoginFailed(ActivelearnError):
    """Wrong name or password (the message never says which)."""


class LoginThrottled(LoginFailed):
    """Too many failed log-ins for this name: try again later."""


class TaskNotCurrent(ActivelearnError):
    """A task that is no longer the caller's to answer: given back, taken over, or undone."""


class NothingToRelabel(ActivelearnError):
    """A correction was asked for a sample that has no label to correct."""


class InvalidReason(ActivelearnError):
    """A rejection reason that cannot be stored (too long)."""
