"""Reading text files: UTF-8 with or without a byte-order mark (what many Windows tools and
spreadsheet exports write); anything else is one DataError naming the file."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

from mdr.errors import DataError

TEXT_ENCODING = "utf-8-sig"  # UTF-8; a leading byte-order mark is dropped


def text_lines(path: str, newline: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a text file (gzipped if it ends in ``.gz``)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding=TEXT_ENCODING, newline=newline) as fh:
            yield from enumerate(fh, 1)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason})") from None


def read_text(path: str) -> str:
    """The whole file as text."""
    return "".join(line for _, line in text_lines(path))
