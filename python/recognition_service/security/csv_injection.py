"""Spreadsheet cells that cannot run as formulas (OWASP CSV injection): names, ids and file names come from
outside (a roster, a backend) and every CSV this service writes is opened in a spreadsheet."""

from __future__ import annotations

import csv

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell):
    """A text cell starting like a formula gets a leading apostrophe; anything else is unchanged."""
    if isinstance(cell, str) and cell[:1] in _FORMULA_START:
        return "'" + cell
    return cell


class SafeCsvWriter:
    """csv.writer whose text cells go through `neutralise`."""

    def __init__(self, f):
        self._writer = csv.writer(f)

    def writerow(self, row) -> None:
        self._writer.writerow([neutralise(cell) for cell in row])
