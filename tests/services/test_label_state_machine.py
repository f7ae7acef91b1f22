"""One live label per sample, always: random sequences of labeling actions against a model.

A hypothesis state machine drives submit, skip, release, undo, relabel, imports, send-back and
grid pages by several annotators, and after every step checks the database invariant (at most
one live label per sample) and that `labels()` equals a plain-Python model of what each action
should have done. It runs on SQLite and on PostgreSQL (the db_url fixture).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from activelearn import (
    NothingToRelabel,
    NothingToUndo,
    Project,
    TaskNotCurrent,
    Workspace,
)
from activelearn.services.dashboard import send_back_for_review
from db.engine import read_session
from db.models import Annotation, Sample
from tests.conftest import png_bytes

ANNOTATORS = ("ana", "bob", "eve")
CLASSES = ("cat", "dog", "owl")
INITIAL_POOL = 4
MAX_IMPORTS = 4
# >= 2,000 random steps per backend: examples x steps per example (measured: about 40 s each
# on SQLite and PostgreSQL, one core).
EXAMPLES = 90
STEPS = 30
MIN_STEPS = 2_000


def _pick(data: st.DataObject, choices: list) -> object:
    """One of `choices`, drawn as a fixed-range index: the lists follow the database's state,
    and hypothesis needs every draw to have the same shape when it replays a case."""
    return choices[data.draw(st.integers(0, 1_000_000)) % len(choices)]


@dataclass
class ModelLabel:
    key: int  # the model's own id, in creation order (the database's ids are in the same order)
    sample: int
    label: str
    annotator: str
    replaces: int | None
    live: bool = True


@dataclass
class ModelTask:
    id: int
    sample: int
    annotator: str
    state: str = "held"  # held | labeled | closed
    answer: int | None = None  # the ModelLabel key of its first answer


@dataclass
class Model:
    labels: list[ModelLabel] = field(default_factory=list)
    tasks: dict[int, ModelTask] = field(default_factory=dict)
    samples: list[int] = field(default_factory=list)  # pool samples in import order

    def live(self, sample: int) -> ModelLabel | None:
        found = [a for a in self.labels if a.sample == sample and a.live]
        assert len(found) <= 1
        return found[0] if found else None

    def holder(self, sample: int) -> ModelTask | None:
        return next(
            (t for t in self.tasks.values() if t.sample == sample and t.state == "held"), None
        )

    def held_by(self, annotator: str) -> list[ModelTask]:
        return sorted(
            (t for t in self.tasks.values() if t.annotator == annotator and t.state == "held"),
            key=lambda t: t.id,
        )

    def open_unheld(self) -> set[int]:
        return {s for s in self.samples if self.live(s) is None and self.holder(s) is None}

    def replace(self, sample: int, label: str, annotator: str) -> ModelLabel:
        live = self.live(sample)
        if live is not None:
            live.live = False
        new = ModelLabel(len(self.labels), sample, label, annotator, live.key if live else None)
        self.labels.append(new)
        return new

    def answer_is_current(self, task: ModelTask, annotator: str) -> ModelLabel | None:
        node = self.live(task.sample)
        live = node
        while node is not None and node.annotator == annotator:
            if node.key == task.answer:
                return live
            node = self.labels[node.replaces] if node.replaces is not None else None
        return None

    def submit(self, task_id: int, label: str, annotator: str) -> bool:
        """Apply a submit; False when the real one must raise TaskNotCurrent."""
        task = self.tasks[task_id]
        if task.state == "labeled":
            live = self.answer_is_current(task, annotator)
            if live is None:
                return False
            if live.label != label:
                self.replace(task.sample, label, annotator)
            return True
        if task.state != "held" or task.annotator != annotator:
            return False
        task.answer = self.replace(task.sample, label, annotator).key
        task.state = "labeled"
        return True

    def give_back(self, task_id: int, annotator: str) -> bool:
        task = self.tasks[task_id]
        if task.state != "held":
            return True
        if task.annotator != annotator:
            return False
        task.state = "closed"
        return True


class LabelingMachine(RuleBasedStateMachine):
    """One fresh project per example in the shared workspace."""

    workspace: Workspace
    folder: Path
    counter = itertools.count()
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        number = next(self.counter)
        self.project: Project = self.workspace.create_project(
            f"p{number}", list(CLASSES), settings={"audit_share": 0.0, "retrain_every": 0}
        )
        self.model = Model()
        self.imports = 0
        self.seed = number * 1000
        self._import(count=INITIAL_POOL, label=None)

    # ------------------------------------------------------------ helpers

    def _import(self, *, count: int, label: str | None) -> None:
        folder = self.folder / f"{self.project.name}-{self.imports}"
        self.imports += 1
        target = folder / label if label else folder
        target.mkdir(parents=True)
        for _ in range(count):
            self.seed += 1
            (target / f"{self.seed}.png").write_bytes(png_bytes(self.seed, size=8))
        report = self.project.import_images(folder)
        assert len(report.accepted) == count
        with read_session(self.project.engine) as session:
            new = session.scalars(
                select(Sample.id)
                .where(Sample.project_id == self.project.id, Sample.id.not_in(self.model.samples))
                .order_by(Sample.id)
            ).all()
        assert len(new) == count
        for sample_id in new:
            self.model.samples.append(int(sample_id))
            if label:
                self.model.replace(int(sample_id), label, "import")

    def _task_ids(self) -> list[int]:
        return sorted(self.model.tasks)

    # ------------------------------------------------------------ rules

    @rule(annotator=st.sampled_from(ANNOTATORS))
    def next_task(self, annotator: str) -> None:
        held = self.model.held_by(annotator)
        expected_open = self.model.open_unheld()
        task = self.project.next_task(annotator)
        if held:
            assert task is not None and task.id == held[-1].id
            return
        if task is None:
            assert not expected_open
            return
        assert task.sample_id in expected_open
        self.model.tasks[task.id] = ModelTask(task.id, task.sample_id, annotator)

    @rule(annotator=st.sampled_from(ANNOTATORS), count=st.integers(1, 3))
    def next_tasks(self, annotator: str, count: int) -> None:
        held = self.model.held_by(annotator)
        expected_open = self.model.open_unheld()
        tasks = self.project.next_tasks(annotator, count=count)
        assert [t.id for t in tasks[: len(held)]] == [t.id for t in held][:count]
        fresh = tasks[len(held) :]
        assert len(tasks) == min(count, len(held) + len(expected_open))
        assert {t.sample_id for t in fresh} <= expected_open
        for task in fresh:
            self.model.tasks[task.id] = ModelTask(task.id, task.sample_id, annotator)

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data(), annotator=st.sampled_from(ANNOTATORS), label=st.sampled_from(CLASSES))
    def submit(self, data: st.DataObject, annotator: str, label: str) -> None:
        task_id = _pick(data, self._task_ids())
        if self.model.submit(task_id, label, annotator):
            self.project.submit(task_id, label, annotator=annotator)
        else:
            with pytest.raises(TaskNotCurrent):
                self.project.submit(task_id, label, annotator=annotator)

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data(), annotator=st.sampled_from(ANNOTATORS), skip=st.booleans())
    def give_back(self, data: st.DataObject, annotator: str, skip: bool) -> None:
        task_id = _pick(data, self._task_ids())
        action = self.project.skip if skip else self.project.release
        if self.model.give_back(task_id, annotator):
            action(task_id, annotator=annotator)
        else:
            with pytest.raises(TaskNotCurrent):
                action(task_id, annotator=annotator)

    @rule(data=st.data(), annotator=st.sampled_from(ANNOTATORS))
    def submit_page(self, data: st.DataObject, annotator: str) -> None:
        """A grid page: the annotator's held tasks, sometimes with someone else's task."""
        # Every draw has the same shape whatever the state: which samples the (unseeded) cold
        # start served changes how many tasks are held, and hypothesis replays draws by shape.
        add_other = data.draw(st.booleans())
        other = data.draw(st.integers(0, 1_000_000))
        values = data.draw(st.lists(st.sampled_from((None, *CLASSES)), min_size=8, max_size=8))
        page = [t.id for t in self.model.held_by(annotator)]
        if self.model.tasks and add_other:
            ids = self._task_ids()
            page.append(ids[other % len(ids)])
        if not page:
            return
        answers = {
            task_id: values[index % len(values)]
            for index, task_id in enumerate(dict.fromkeys(page))
        }
        trial = _copy(self.model)
        ok = all(
            trial.submit(task_id, value, annotator)
            if value is not None
            else trial.give_back(task_id, annotator)
            for task_id, value in answers.items()
        )
        if ok:
            self.project.submit_page(answers, annotator=annotator)
            self.model = trial
        else:
            with pytest.raises(TaskNotCurrent):
                self.project.submit_page(answers, annotator=annotator)

    @rule(annotator=st.sampled_from(ANNOTATORS))
    def undo(self, annotator: str) -> None:
        mine = [a for a in self.model.labels if a.live and a.annotator == annotator]
        if not mine:
            with pytest.raises(NothingToUndo):
                self.project.undo(annotator=annotator)
            return
        last = max(mine, key=lambda a: a.key)
        task = self.project.undo(annotator=annotator)
        last.live = False
        if last.replaces is not None:
            self.model.labels[last.replaces].live = True
        held = self.model.held_by(annotator)
        if held:
            held[-1].state = "closed"
        holder = self.model.holder(last.sample)
        if holder is not None:
            holder.state = "closed"
        assert task.sample_id == last.sample
        self.model.tasks[task.id] = ModelTask(task.id, last.sample, annotator)

    @rule(data=st.data(), annotator=st.sampled_from(ANNOTATORS), label=st.sampled_from(CLASSES))
    def relabel(self, data: st.DataObject, annotator: str, label: str) -> None:
        sample = _pick(data, self.model.samples)
        live = self.model.live(sample)
        holder = self.model.holder(sample)
        if live is None:
            with pytest.raises(NothingToRelabel):
                self.project.relabel(sample, label, annotator=annotator)
        elif live.label == label and live.annotator == annotator:
            self.project.relabel(sample, label, annotator=annotator)
        elif holder is not None and holder.annotator != annotator:
            with pytest.raises(TaskNotCurrent):
                self.project.relabel(sample, label, annotator=annotator)
        else:
            self.project.relabel(sample, label, annotator=annotator)
            self.model.replace(sample, label, annotator)

    @rule(data=st.data())
    def send_back(self, data: st.DataObject) -> None:
        sample = _pick(data, self.model.samples)
        live = self.model.live(sample)
        assert send_back_for_review(self.project, sample, by="lead") == (live is not None)
        if live is not None:
            live.live = False

    @precondition(lambda self: self.imports <= MAX_IMPORTS)
    @rule(label=st.sampled_from((None, *CLASSES)), count=st.integers(1, 2))
    def import_images(self, label: str | None, count: int) -> None:
        self._import(count=count, label=label)

    # ------------------------------------------------------------ checks after every step

    @invariant()
    def one_live_label_per_sample_and_labels_match_the_model(self) -> None:
        type(self).steps += 1
        with read_session(self.project.engine) as session:
            doubled = session.execute(
                select(Annotation.sample_id)
                .where(Annotation.project_id == self.project.id, Annotation.superseded.is_(False))
                .group_by(Annotation.sample_id)
                .having(func.count() > 1)
            ).all()
            samples = {
                int(i): (status, label)
                for i, status, label in session.execute(
                    select(Sample.id, Sample.status, Sample.label).where(
                        Sample.project_id == self.project.id
                    )
                )
            }
        assert doubled == []
        frame = self.project.labels()
        actual = {
            int(s): (lbl, a)
            for s, lbl, a in zip(
                frame["sample_id"], frame["label"], frame["annotator"], strict=True
            )
        }
        assert len(actual) == len(frame)  # one row per sample
        expected = {a.sample: (a.label, a.annotator) for a in self.model.labels if a.live}
        assert actual == expected
        for sample in self.model.samples:
            live = self.model.live(sample)
            want = ("labeled", live.label) if live else ("open", None)
            assert samples[sample] == want


def _copy(model: Model) -> Model:
    return Model(
        labels=[ModelLabel(**vars(a)) for a in model.labels],
        tasks={k: ModelTask(**vars(t)) for k, t in model.tasks.items()},
        samples=list(model.samples),
    )


@pytest.fixture
def machine_workspace(db_url: str, tmp_path: Path) -> Iterator[Workspace]:
    with Workspace(db_url, data_dir=tmp_path / "data") as ws:
        yield ws


@pytest.mark.slow
def test_one_live_label_per_sample_under_random_labeling(
    machine_workspace: Workspace, tmp_path: Path
) -> None:
    LabelingMachine.workspace = machine_workspace
    LabelingMachine.folder = tmp_path / "sources"
    LabelingMachine.steps = 0
    run_state_machine_as_test(
        LabelingMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    # Every invariant check follows one step (plus one after the set-up of each example).
    assert LabelingMachine.steps - EXAMPLES >= MIN_STEPS, LabelingMachine.steps
