"""Hostile server paths: with import roots, nothing outside them is read, whatever the spelling."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from activelearn import ImportFailed, Workspace
from activelearn.errors import OutsideImportRoots
from activelearn.ingest import roots as roots_module
from activelearn.ingest import sources
from tests.conftest import png_bytes, write_images


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """root/ (the import root) with images; outside/ beside it with a secret image."""
    root = tmp_path / "import"
    write_images(root / "good", 3)
    write_images(tmp_path / "outside", 2, start=100)
    write_images(tmp_path / "import-evil", 2, start=200)  # shares the root's name as a prefix
    return {"tmp": tmp_path, "root": root, "outside": tmp_path / "outside"}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file the import pipeline opens for its bytes."""
    opened: list[str] = []
    real = sources._read_file

    def spy(path: str) -> tuple[bytes | None, str | None]:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(sources, "_read_file", spy)
    return opened


@pytest.fixture
def confined(layout: dict[str, Path]) -> Iterator[Workspace]:
    ws = Workspace(
        f"sqlite:///{layout['tmp'] / 'al.db'}",
        data_dir=layout["tmp"] / "data",
        import_roots=[layout["root"]],
    )
    ws.create_project("p", ["a", "b"])
    yield ws
    ws.close()


def _refused(action, root: Path) -> str:
    with pytest.raises(OutsideImportRoots) as caught:
        action()
    message = str(caught.value)
    assert str(root.resolve()) in message  # the message names the roots
    return message


def test_a_folder_inside_the_root_imports(confined: Workspace, layout, reads) -> None:
    report = confined.project("p").import_images(layout["root"] / "good")
    assert len(report.accepted) == 3
    assert len(reads) == 3


@pytest.mark.parametrize(
    "spelling",
    [
        "{root}/../outside",
        "{root}/good/../../outside",
        "{tmp}/outside",
        "{tmp}/import-evil",
        "/etc",
        "/",
        "{root}/../outside/img00100.png",
    ],
)
def test_paths_outside_the_root_are_refused_unread(
    confined: Workspace, layout, reads, spelling: str
) -> None:
    path = spelling.format(root=layout["root"], tmp=layout["tmp"])
    project = confined.project("p")
    _refused(lambda: project.import_images(path), layout["root"])
    _refused(lambda: project.import_manifest(path), layout["root"])
    assert reads == []
    assert project.status().n_samples == 0


def test_relative_dotdot_is_resolved_against_the_working_folder(
    confined: Workspace, layout, reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(layout["root"] / "good")
    project = confined.project("p")
    _refused(lambda: project.import_images("../../outside"), layout["root"])
    assert len(project.import_images(".").accepted) == 3  # the working folder is inside


def test_symlinks_out_of_the_root_are_refused(confined: Workspace, layout, reads) -> None:
    root = layout["root"]
    (root / "link-folder").symlink_to(layout["outside"], target_is_directory=True)
    (root / "link-file.png").symlink_to(layout["outside"] / "img00100.png")
    (root / "nested").mkdir()
    (root / "nested" / "up").symlink_to(layout["tmp"], target_is_directory=True)
    project = confined.project("p")
    for path in (root / "link-folder", root / "link-file.png", root / "nested/up/outside"):
        _refused(lambda path=path: project.import_images(path), root)
    assert reads == []


def test_a_symlink_inside_a_folder_is_not_followed(confined: Workspace, layout, reads) -> None:
    """The folder is inside; a link in it to an outside file is reported, never read."""
    folder = layout["root"] / "good"
    (folder / "zz-secret.png").symlink_to(layout["outside"] / "img00100.png")
    report = confined.project("p").import_images(folder)
    assert len(report.accepted) == 3
    assert any("symlink" in reason for _path, reason in report.rejected)
    outside = str(layout["outside"])
    assert not any(path.startswith(outside) for path in reads)


def test_manifest_rows_outside_the_root_refuse_the_whole_manifest(
    confined: Workspace, layout, reads
) -> None:
    root, outside = layout["root"], layout["outside"]
    (root / "escape.png").symlink_to(outside / "img00101.png")
    manifest = root / "list.csv"
    manifest.write_text(
        "path,label\n"
        "good/img00000.png,a\n"
        "../outside/img00100.png,b\n"
        f"{outside / 'img00101.png'},a\n"
        "escape.png,a\n"
        "/etc/passwd,a\n"
    )
    project = confined.project("p")
    for run in (lambda: project.import_manifest(manifest), lambda: project.import_images(manifest)):
        message = _refused(run, root)
        assert "4 file(s) outside" in message and "nothing was imported" in message
    assert reads == []  # not even the good row
    assert project.status().n_samples == 0


def test_a_manifest_inside_the_root_imports(confined: Workspace, layout, reads) -> None:
    manifest = layout["root"] / "list.csv"
    manifest.write_text("path,label\ngood/img00000.png,a\ngood/img00001.png,b\n")
    report = confined.project("p").import_manifest(manifest)
    assert len(report.accepted) == 2
    assert len(reads) == 2


@pytest.mark.parametrize(
    "name",
    ["%2e%2e/outside", "..%2foutside", "%2E%2E%2Foutside", "\uff0e\uff0e/outside", "..\\outside"],
)
def test_encoded_names_are_literal_names(confined: Workspace, layout, reads, name: str) -> None:
    """Browsers send typed text, not URLs: an encoded '..' is a file name inside the root that
    does not exist, so nothing is found and nothing outside is read."""
    project = confined.project("p")
    with pytest.raises(ImportFailed):
        project.import_images(layout["root"] / name)
    manifest = layout["root"] / "encoded.csv"
    manifest.write_text(f"path\n{name}/img00100.png\n")
    try:
        report = project.import_manifest(manifest)
    except OutsideImportRoots:
        # A backslash row is read as a Windows path ("..\\outside" -> "../outside"): the
        # roots check sees the converted path and refuses it.
        assert "\\" in name
    else:
        assert report.accepted == []
    assert not any(path.startswith(str(layout["outside"])) for path in reads)


def test_nul_and_empty_paths_are_refused(confined: Workspace, layout) -> None:
    project = confined.project("p")
    with pytest.raises(OutsideImportRoots, match="NUL"):
        project.import_images(f"{layout['root']}/good\x00/../../outside")
    _refused(lambda: project.import_images("   "), layout["root"])


def test_zip_uploads_are_unchanged(confined: Workspace) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.png", png_bytes(7))
    report = confined.project("p").import_zip(buffer.getvalue(), name="up.zip")
    assert len(report.accepted) == 1


def test_a_zip_path_outside_the_roots_is_refused(confined: Workspace, layout, reads) -> None:
    archive = layout["outside"] / "x.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("x.png", png_bytes(8))
    _refused(lambda: confined.project("p").import_zip(archive), layout["root"])


def test_without_roots_the_api_imports_anywhere(layout) -> None:
    with Workspace(f"sqlite:///{layout['tmp'] / 'free.db'}", data_dir=layout["tmp"] / "d2") as ws:
        project = ws.create_project("p", ["a", "b"])
        assert len(project.import_images(layout["outside"]).accepted) == 2


def test_roots_come_from_the_environment(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    env = {roots_module.ROOTS_ENV: f"{first}{os.pathsep}{second}{os.pathsep}"}
    assert roots_module.configured_roots(tmp_path / "data", env) == [first, second]
    assert roots_module.configured_roots(tmp_path / "data", {}) == [tmp_path / "data" / "import"]
    assert roots_module.is_inside(second / "x" / ".." / "y", [first, second])
    assert not roots_module.is_inside(tmp_path / "one-more", [first])
