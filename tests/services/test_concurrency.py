"""Many annotators on one database: no sample held twice, every label stored once."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import func, select

from activelearn import Workspace
from db.engine import read_session
from db.models import Annotation
from tests.conftest import write_images

THREADS = 8
PER_THREAD = 200


def test_eight_threads_label_without_collisions(workspace: Workspace, tmp_path: Path) -> None:
    write_images(tmp_path / "pool", THREADS * PER_THREAD + 50, prefix="s")
    project = workspace.create_project("busy", classes=["a", "b"])
    assert len(project.import_images(tmp_path / "pool").accepted) == THREADS * PER_THREAD + 50
    errors: list[BaseException] = []
    served: dict[str, list[int]] = {}

    def annotate(name: str) -> None:
        mine: list[int] = []
        try:
            for index in range(PER_THREAD):
                task = project.next_task(annotator=name)
                assert task is not None
                mine.append(task.sample_id)
                project.submit(task.id, label="ab"[index % 2], annotator=name)
                project.submit(task.id, label="ab"[index % 2], annotator=name)  # double submit
        except BaseException as error:
            errors.append(error)
        served[name] = mine

    threads = [threading.Thread(target=annotate, args=(f"annotator-{i}",)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    every = [sample for samples in served.values() for sample in samples]
    assert len(every) == THREADS * PER_THREAD
    assert len(set(every)) == len(every), "a sample was served to two annotators"
    with read_session(workspace.engine) as session:
        stored = session.scalar(select(func.count()).select_from(Annotation))
        distinct = session.scalar(select(func.count(func.distinct(Annotation.sample_id))))
    assert stored == distinct == THREADS * PER_THREAD
