"""activelearn: active-learning image labeling with deep ensembles.

Public API: Workspace, Project, and the records and errors they return and raise.
"""

from activelearn.errors import (
    ActivelearnError,
    ImportFailed,
    InvalidAnnotator,
    InvalidClasses,
    InvalidSetting,
    NotAllowed,
    NothingToUndo,
    ProjectExists,
    ProjectNotFound,
    RoundInProgress,
    UnknownLabel,
    UnknownTask,
)
from activelearn.services.settings import ProjectSettings
from activelearn.services.workspace import Project, Workspace
from activelearn.types import ImportReport, LabelRecord, ProjectStatus, RoundInfo, Task

__all__ = [
    "ActivelearnError",
    "ImportFailed",
    "ImportReport",
    "InvalidAnnotator",
    "InvalidClasses",
    "InvalidSetting",
    "LabelRecord",
    "NotAllowed",
    "NothingToUndo",
    "Project",
    "ProjectExists",
    "ProjectNotFound",
    "ProjectSettings",
    "ProjectStatus",
    "RoundInProgress",
    "RoundInfo",
    "Task",
    "UnknownLabel",
    "UnknownTask",
    "Workspace",
]

__version__ = "0.1.0"
