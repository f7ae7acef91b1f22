"""SQLAlchemy 2.0 typed models: projects, samples, labels, leases, rounds, metrics, scores,
representation jobs, people and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SPLITS = ("pool", "eval", "test")
ROUND_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_ROUND_STATUSES = ("queued", "running")


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    classes: Mapped[list[str]] = mapped_column(JSON)  # ordered: index = class id
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_samples_project_sha256"),
        # The queue walks these in order: cold-start (random_key) and fallback serving.
        Index("ix_samples_queue", "project_id", "split", "status", "random_key"),
        Index("ix_samples_project_label", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)  # the original path, or the stored file for zips/demo
    # Where the file came from, relative to the imported folder, manifest folder or zip
    # ("bird/bird_0.jpg"); NULL for samples imported before it was recorded.
    original_name: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(8), default="pool")  # pool | eval | test
    gold_label: Mapped[str | None] = mapped_column(String(200))
    # Denormalised current state, kept in step with annotations by the queries module.
    status: Mapped[str] = mapped_column(String(8), default="open")  # open | labeled | rejected
    label: Mapped[str | None] = mapped_column(String(200))
    skip_count: Mapped[int] = mapped_column(Integer, default=0)
    random_key: Mapped[float] = mapped_column(Float)  # uniform [0, 1): the cold-start order
    # Before the first round: TypiClust's order over the pool's embeddings (1 = served first)
    # and why, written when a representation job succeeds; NULL = not among the picks.
    typical_rank: Mapped[int | None] = mapped_column(Integer)
    typical_reason: Mapped[str | None] = mapped_column(Text)
    cache_shard: Mapped[int] = mapped_column(Integer)
    cache_index: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Annotation(Base):
    __tablename__ = "annotations"
    __table_args__ = (
        Index("ix_annotations_sample", "sample_id", "superseded"),
        Index("ix_annotations_annotator", "project_id", "annotator", "superseded", "id"),
        # At most one live label per sample, however it was given: the database refuses a second.
        Index(
            "uq_annotations_one_live",
            "sample_id",
            unique=True,
            sqlite_where=text("NOT superseded"),
            postgresql_where=text("NOT superseded"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    # The served task this label answers; unique, so a double submit stores one row.
    task_id: Mapped[int | None] = mapped_column(ForeignKey("acquisition_log.id"), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    annotator: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # An undo or an edit marks the row superseded; rows are never deleted.
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The live label this one replaced (a correction or a re-submit); undoing this label makes
    # that one live again, so relabel and undo form a history.
    replaces_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotations.id", name="fk_annotations_replaces"), default=None
    )


class Lease(Base):
    """The live hold of one annotator on one sample; one row per sample at most."""

    __tablename__ = "leases"

    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(ForeignKey("acquisition_log.id"))
    annotator: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class AcquisitionEntry(Base):
    """Which sample was served to whom, from which round, by which strategy, score and rank."""

    __tablename__ = "acquisition_log"
    __table_args__ = (Index("ix_acquisition_project", "project_id", "served_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)  # the task id handed to annotators
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    annotator: Mapped[str] = mapped_column(String(200))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"))
    strategy: Mapped[str] = mapped_column(String(40))  # e.g. bald, cold_start, audit, unscored
    score: Mapped[float | None] = mapped_column(Float)
    rank: Mapped[int | None] = mapped_column(Integer)
    served_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    outcome: Mapped[str | None] = mapped_column(String(12))  # labeled | skipped | None (open)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (
        Index("ix_rounds_project_status", "project_id", "status"),
        # One queued-or-running round per project, enforced by the database itself.
        Index(
            "uq_rounds_one_active",
            "project_id",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(12), default="queued")
    phase: Mapped[str] = mapped_column(String(40), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1 over the whole round
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # member, epoch, loss, ...
    n_labels: Mapped[int] = mapped_column(Integer, default=0)
    strategy: Mapped[str] = mapped_column(String(40), default="bald")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    device: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid of the claiming worker
    checkpoint: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Representation(Base):
    """A representation job of a project: a self-supervised encoder trained on the pool, whose
    embeddings of every sample are stored once under the data folder (not in SQL). Claimed,
    heartbeated and flipped to succeeded like a round; readers use the newest succeeded one."""

    __tablename__ = "representations"
    __table_args__ = (
        Index("ix_representations_project_status", "project_id", "status"),
        # One queued-or-running representation job per project, enforced by the database.
        Index(
            "uq_representations_one_active",
            "project_id",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(12), default="queued")
    phase: Mapped[str] = mapped_column(String(40), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1 over the whole job
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # epoch, loss, images/s
    version: Mapped[str | None] = mapped_column(String(128))  # the embeddings' encoder version
    n_images: Mapped[int] = mapped_column(Integer, default=0)  # pool images trained on
    n_embedded: Mapped[int] = mapped_column(Integer, default=0)  # samples embedded (all splits)
    path: Mapped[str | None] = mapped_column(Text)  # the embeddings file, once succeeded
    device: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims, re-queues after a crash
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid of the claiming worker
    requested_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class RoundMetric(Base):
    """Evaluation of a round: member = -1 for the ensemble, 0..M-1 for each member."""

    __tablename__ = "round_metrics"

    round_id: Mapped[int] = mapped_column(
        ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True
    )
    member: Mapped[int] = mapped_column(Integer, primary_key=True)
    eval_source: Mapped[str] = mapped_column(String(12))  # test | audit
    n_eval: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float | None] = mapped_column(Float)
    accuracy_se: Mapped[float | None] = mapped_column(Float)
    nll: Mapped[float | None] = mapped_column(Float)
    nll_se: Mapped[float | None] = mapped_column(Float)
    brier: Mapped[float | None] = mapped_column(Float)
    brier_se: Mapped[float | None] = mapped_column(Float)
    ece: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # bins, confusion, ...


class RoundPoolSummary(Base):
    """The dashboard's pool charts of one succeeded round, computed once from its scores.

    A round's scores never change, so its histograms, scatter sample, galleries, confidence
    profile and stability are computed when the round finishes and read back as one small JSON
    document instead of 100,000 score rows. `previous_round_id` is the round the histogram
    overlay and stability compare against, and `version` the summary's format: a summary whose
    previous round or format is not the one wanted is recomputed.
    """

    __tablename__ = "round_pool_summaries"

    round_id: Mapped[int] = mapped_column(
        ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True
    )
    previous_round_id: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class TrainingEpoch(Base):
    __tablename__ = "training_epochs"

    round_id: Mapped[int] = mapped_column(
        ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True
    )
    member: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)


class SampleScore(Base):
    __tablename__ = "sample_scores"
    __table_args__ = (Index("ix_scores_round_priority", "round_id", "priority"),)

    round_id: Mapped[int] = mapped_column(
        ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True
    )
    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True
    )
    mutual_information: Mapped[float] = mapped_column(Float)
    predictive_entropy: Mapped[float] = mapped_column(Float)
    expected_entropy: Mapped[float] = mapped_column(Float)
    variance: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    predicted_class: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    mean_probs: Mapped[list[float] | None] = mapped_column(JSON)  # (C,) rounded
    member_predictions: Mapped[list[int] | None] = mapped_column(JSON)  # (M,) top class per member
    rank: Mapped[int | None] = mapped_column(Integer)  # 1 = first in this round's ranking
    # What the queue orders by (higher first): the strategy's score, or a rank-derived value
    # for batch strategies.
    priority: Mapped[float] = mapped_column(Float)
    # Honesty (services.honesty): open samples get an OOD score in (0, 1]; labeled ones an
    # out-of-sample label-issue score in [0, 1] and the class their judges suggest instead.
    ood_score: Mapped[float | None] = mapped_column(Float)
    label_issue: Mapped[float | None] = mapped_column(Float)
    suggested_class: Mapped[int | None] = mapped_column(Integer)
    # Why the round's strategy chose it ("most typical of an unlabeled cluster of 312 images"),
    # for the samples a batch strategy picked.
    reason: Mapped[str | None] = mapped_column(Text)


# ---------------------------------------------------------------- people, log-in and the audit log


class User(Base):
    """A person with a role on this server: lead or annotator. A password is optional (OIDC
    users log in through their identity provider). While no lead exists the server is in open
    mode."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # lead | annotator
    password_hash: Mapped[str | None] = mapped_column(Text)  # argon2id, encoded with its salt
    created_at: Mapped[datetime] = mapped_column(DateTime)


class LoginSession(Base):
    """A browser's log-in: only the SHA-256 of its random token is stored."""

    __tablename__ = "login_sessions"
    __table_args__ = (Index("ix_login_sessions_user", "user_name"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # password | open (a typed name, open mode)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class LoginThrottle(Base):
    """Failed password attempts per typed name (whether or not the account exists)."""

    __tablename__ = "login_throttle"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure: Mapped[datetime] = mapped_column(DateTime)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)


class AuditEntry(Base):
    """One lead action: who, what, when. No foreign key: the log outlives what it names."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_project", "project_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[int | None] = mapped_column(Integer)
    project_name: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Rejection(Base):
    """A sample an annotator marked as not valid (broken, blank, off-topic), with an optional
    reason. While a rejection is live (restored_at is NULL) the sample's status is `rejected`:
    it leaves the queue, training, evaluation and scoring. A lead may restore it."""

    __tablename__ = "rejections"
    __table_args__ = (Index("ix_rejections_project", "project_id", "restored_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    annotator: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    restored_at: Mapped[datetime | None] = mapped_column(DateTime)
    restored_by: Mapped[str | None] = mapped_column(String(200))
