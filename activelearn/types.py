"""Small frozen records that cross from the service layer into the UI, CLI and scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class _StrEnum(str, Enum):
    """enum.StrEnum of Python 3.11, here for 3.10: members are their own string values."""

    def __str__(self) -> str:
        return str(self.value)


class RoundStatus(_StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Queued or running: the round still holds the project's one active slot."""
        return self in (RoundStatus.QUEUED, RoundStatus.RUNNING)


class SampleSplit(_StrEnum):
    POOL = "pool"  # unlabeled or labeled for training; actively ranked
    EVAL = "eval"  # audit draws: labeled at random, held out for evaluation
    TEST = "test"  # an imported gold test split


class SampleStatus(_StrEnum):
    OPEN = "open"  # in the queue, no live label
    LABELED = "labeled"
    REJECTED = "rejected"  # marked "not a valid sample": out of queue, training and scores


@dataclass(frozen=True)
class Task:
    """A sample served to one annotator, held for them until expires_at."""

    id: int
    sample_id: int
    image: str  # the file's path: the original one for folder/CSV imports
    rank: int | None  # position in the ranking that served it (1 = most informative)
    strategy: str  # bald, entropy, ..., cold_start, audit, unscored, undo
    round_id: int | None
    expires_at: datetime
    scores: dict[str, float] = field(default_factory=dict)  # empty before the first round
    mean_probs: list[float] | None = None  # (C,) the ensemble's mean prediction
    member_predictions: list[int] | None = None  # (M,) each member's top class index
    original_name: str | None = None  # path inside the imported folder or zip; None if unknown
    reason: str | None = None  # why the strategy chose it, in words (typicality strategies)

    @property
    def shown_name(self) -> str:
        """What to call the sample on screen: its original name, else its file's name."""
        return self.original_name or self.image.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ImportReport:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    classes_added: list[str] = field(default_factory=list)
    # (path, what disagrees): a duplicate of an image already in the project or earlier in the
    # same import whose label differs; not imported, and not counted in duplicates.
    conflicts: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.accepted)} imported"]
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} already present (skipped)")
        if self.rejected:
            shown = ", ".join(f"{path} ({reason})" for path, reason in self.rejected[:5])
            more = f", and {len(self.rejected) - 5} more" if len(self.rejected) > 5 else ""
            parts.append(f"{len(self.rejected)} rejected: {shown}{more}")
        if self.conflicts:
            shown = ", ".join(f"{path} ({reason})" for path, reason in self.conflicts[:5])
            more = f", and {len(self.conflicts) - 5} more" if len(self.conflicts) > 5 else ""
            noun = "conflict" if len(self.conflicts) == 1 else "conflicts"
            parts.append(f"{len(self.conflicts)} label {noun} (not imported): {shown}{more}")
        if self.classes_added:
            parts.append("new classes: " + ", ".join(self.classes_added))
        return "; ".join(parts)


@dataclass(frozen=True)
class LabelRecord:
    annotation_id: int
    sample_id: int
    path: str
    label: str
    labeled_at: datetime
    original_name: str | None = None


@dataclass(frozen=True)
class ProjectStatus:
    n_samples: int
    n_pool: int  # pool samples, labeled or not
    n_unlabeled: int  # open pool samples
    n_labeled: int  # labeled samples used for training (pool split)
    n_eval: int  # audit samples held out for evaluation (labeled)
    n_test: int  # imported test split
    labels_since_round: int  # live labels given since the ranking being served was trained
    current_round_id: int | None  # the round whose ranking is served
    pool_exhausted: bool
    extra: dict[str, Any] = field(default_factory=dict)
    n_rejected: int = 0  # samples marked "not a valid sample" (any split), until restored


@dataclass(frozen=True)
class RoundInfo:
    id: int
    status: str  # queued | running | succeeded | failed | cancelled
    phase: str  # queued, loading, training, evaluating, scoring, saving, done
    progress: float  # 0..1 over the whole round
    detail: dict[str, Any]  # member, epoch, epochs, loss, scored, total, ...
    n_labels: int
    strategy: str
    device: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class RepresentationInfo:
    """One representation job: a self-supervised encoder trained on the project's pool, and the
    embeddings of every sample it produced (stored under the data folder, keyed by version)."""

    id: int
    status: str  # queued | running | succeeded | failed | cancelled
    phase: str  # queued, loading, training, embedding, saving, done
    progress: float  # 0..1 over the whole job
    detail: dict[str, Any]  # epoch, epochs, loss, images_per_second, ...
    version: str | None  # the encoder version its embeddings are stored under (once succeeded)
    n_images: int  # pool images the encoder trained on (never test or eval samples)
    n_embedded: int  # samples embedded: pool, eval and test
    device: str | None
    error: str | None
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class RepresentationStatus:
    """Where a project's representation stands: the job whose embeddings are served (the newest
    succeeded one) and the newest job of any status (queued, running, or how the last ended)."""

    current: RepresentationInfo | None  # None: no embeddings yet
    latest: RepresentationInfo | None  # None: never requested

    @property
    def version(self) -> str | None:
        return self.current.version if self.current is not None else None
