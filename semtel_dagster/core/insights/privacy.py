"""Minimum group size on every published number: small groups are merged into an explicit bucket.

A published count below ``min_group_size`` could point at a handful of people. Such cells are not
dropped (the totals would no longer add up, and a missing cell is recovered as total minus the
rest): they are merged into a ``<suppressed>`` bucket, and more cells join the bucket, smallest
first, until it holds at least two cells and ``min_group_size`` conversations (complementary
suppression: no hidden cell equals a published total minus published cells). Where even every cell
together is under the minimum, the bucket's count is withheld (null).

A cross-tab is protected along both of its margins, because each row's and each column's total is
published elsewhere (``weekly_insights``): a row or column never hides exactly one cell, hidden cells
of a row are merged into that row's bucket, and rows too small to publish share one bucket.
"""

from __future__ import annotations

from collections.abc import Mapping

SUPPRESSED = "<suppressed>"  # the label of a bucket of merged small groups


def hidden_in_distribution(counts: Mapping[str, int], min_group_size: int) -> set[str]:
    """Labels of one distribution merged into its bucket: every count under the minimum, then the
    smallest others until the bucket holds two or more labels and ``min_group_size`` conversations."""
    hidden = {label for label, n in counts.items() if n < min_group_size}
    if not hidden:
        return hidden
    rest = sorted((n, label) for label, n in counts.items() if label not in hidden)
    while rest and (len(hidden) < 2 or sum(counts[label] for label in hidden) < min_group_size):
        hidden.add(rest.pop(0)[1])
    return hidden


def hidden_in_crosstab(cells: Mapping[tuple[str, str], int], min_group_size: int) -> set[tuple[str, str]]:
    """(row, column) cells of a cross-tab that are not published on their own.

    Starts from the cells under the minimum and repeats until stable: a row whose hidden cells are one
    cell, or sum under the minimum while other cells remain, hides its smallest published cell; a
    column hiding exactly one cell hides its smallest published one. Hiding only grows, so it ends.
    """
    hidden = {cell for cell, n in cells.items() if n < min_group_size}
    changed = bool(hidden)
    while changed:
        changed = False
        for axis in (0, 1):
            lines: dict[str, list[tuple[str, str]]] = {}
            for cell in cells:
                lines.setdefault(cell[axis], []).append(cell)
            for members in lines.values():
                hid = [cell for cell in members if cell in hidden]
                shown = sorted((cells[cell], cell) for cell in members if cell not in hidden)
                if not hid or not shown:
                    continue
                too_small = axis == 0 and sum(cells[cell] for cell in hid) < min_group_size
                if len(hid) == 1 or too_small:
                    hidden.add(shown[0][1])
                    changed = True
    return hidden
