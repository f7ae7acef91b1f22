"""Checks on what people type: class names and annotator names."""

from __future__ import annotations

import re

from activelearn.errors import InvalidAnnotator, InvalidClasses

MAX_CLASS_NAME = 200
MAX_ANNOTATOR_NAME = 200


def validate_classes(classes: list[str]) -> list[str]:
    cleaned = [str(name).strip() for name in classes]
    if len(cleaned) < 2:
        raise InvalidClasses("a project needs at least two classes")
    for name in cleaned:
        if not name:
            raise InvalidClasses("class names must not be empty")
        if len(name) > MAX_CLASS_NAME:
            raise InvalidClasses(
                f"class name too long (over {MAX_CLASS_NAME} characters): {name[:40]}…"
            )
    # Cat, cat and CAT are one class to a person: refuse them together, whatever the case.
    folded = [name.casefold() for name in cleaned]
    duplicates = sorted(
        {name for name, key in zip(cleaned, folded, strict=True) if folded.count(key) > 1}
    )
    if duplicates:
        raise InvalidClasses(
            f"duplicate class names: {', '.join(duplicates)} "
            "(upper and lower case count as the same)"
        )
    return cleaned


def validate_annotator(annotator: str) -> str:
    name = (annotator or "").strip()
    if not name:
        raise InvalidAnnotator("an annotator name is required")
    if len(name) > MAX_ANNOTATOR_NAME or re.search(r"[\x00-\x1f]", name):
        raise InvalidAnnotator("annotator names must be at most 200 printable characters")
    return name
