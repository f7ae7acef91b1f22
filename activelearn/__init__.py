"""activelearn: active-learning image labeling with deep ensembles.

Public API: Workspace, Project, and the records and errors they return and raise.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Re-exports load on first use so that `import activelearn.core` stays free of the
# database and UI stacks (the ML core is used on its own, e.g. by training workers).
_EXPORTS: dict[str, str] = {
    "ActivelearnError": "activelearn.errors",
    "ImportFailed": "activelearn.errors",
    "InvalidAnnotator": "activelearn.errors",
    "InvalidClasses": "activelearn.errors",
    "InvalidSetting": "activelearn.errors",
    "NotAllowed": "activelearn.errors",
    "NothingToRelabel": "activelearn.errors",
    "NothingToUndo": "activelearn.errors",
    "ProjectExists": "activelearn.errors",
    "ProjectNotFound": "activelearn.errors",
    "RoundInProgress": "activelearn.errors",
    "TaskNotCurrent": "activelearn.errors",
    "UnknownLabel": "activelearn.errors",
    "UnknownTask": "activelearn.errors",
    "ProjectSettings": "activelearn.services.settings",
    "Project": "activelearn.services.workspace",
    "Workspace": "activelearn.services.workspace",
    "ImportReport": "activelearn.types",
    "LabelRecord": "activelearn.types",
    "ProjectStatus": "activelearn.types",
    "RepresentationInfo": "activelearn.types",
    "RepresentationStatus": "activelearn.types",
    "RoundInfo": "activelearn.types",
    "Task": "activelearn.types",
}

if TYPE_CHECKING:
    from activelearn.errors import (
        ActivelearnError,
        ImportFailed,
        InvalidAnnotator,
        InvalidClasses,
        InvalidSetting,
        NotAllowed,
        NothingToRelabel,
        NothingToUndo,
        ProjectExists,
        ProjectNotFound,
        RoundInProgress,
        TaskNotCurrent,
        UnknownLabel,
        UnknownTask,
    )
    from activelearn.services.settings import ProjectSettings
    from activelearn.services.workspace import Project, Workspace
    from activelearn.types import (
        ImportReport,
        LabelRecord,
        ProjectStatus,
        RepresentationInfo,
        RepresentationStatus,
        RoundInfo,
        Task,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'activelearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "ActivelearnError",
    "ImportFailed",
    "ImportReport",
    "InvalidAnnotator",
    "InvalidClasses",
    "InvalidSetting",
    "LabelRecord",
    "NotAllowed",
    "NothingToRelabel",
    "NothingToUndo",
    "Project",
    "ProjectExists",
    "ProjectNotFound",
    "ProjectSettings",
    "ProjectStatus",
    "RepresentationInfo",
    "RepresentationStatus",
    "RoundInProgress",
    "RoundInfo",
    "Task",
    "TaskNotCurrent",
    "UnknownLabel",
    "UnknownTask",
    "Workspace",
]

__version__ = "0.1.0"
