"""An embedding set's identity: the same key and canonical rows in any order."""

from __future__ import annotations

import pytest
import torch

from activelearn.core.row_set import row_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_any_order_of_the_same_rows_has_one_key_and_one_canonical_order() -> None:
    points = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    first, second = row_set(points), row_set(points[perm])
    assert first.key == second.key
    torch.testing.assert_close(first.canonical(points), second.canonical(points[perm]))
    torch.testing.assert_close(first.rows, second.rows)  # the canonical rows, kept
    torch.testing.assert_close(first.rows, points[first.order])
    # canonical values back in the caller's order are the caller's rows
    torch.testing.assert_close(first.caller(first.canonical(points)), points)
    torch.testing.assert_close(second.caller(second.canonical(points[perm])), points[perm])


def test_other_rows_have_another_key() -> None:
    points = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    moved = points.clone()
    moved[7, 2] += 1e-6
    assert row_set(points).key != row_set(moved).key
    assert row_set(points).key != row_set(points[:49]).key
