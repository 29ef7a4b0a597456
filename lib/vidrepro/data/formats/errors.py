"""How the format readers fail, and how they keep going past entries that real data gets wrong.

Real datasets arrive with holes: YouTube videos that were taken down, feature files that were
never extracted, a story whose images did not download. A reader either stops at the first bad
entry (``on_error="raise"``, the default, so a broken file is never mistaken for a small one) or
leaves it out and says so (``on_error="skip"``): every reader that can skip returns a
``Records`` list whose ``skipped`` report counts what was left out and why, so a notebook can
print "kept 9,512 of 10,000 videos" instead of silently training on less.

Whatever the reason, a ``FormatError`` names the file, the entry (video id, line number, ...)
and what is wrong with it: on a cluster the message is often all a user gets to see.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

OnError = Literal["raise", "skip"]
PathLike = str | os.PathLike[str]
T = TypeVar("T")


class FormatError(ValueError):
    """A file, or one entry in it, that does not have the layout its reader expects.

    ``args`` is ``(path, entry, reason)`` so the error survives pickling (DataLoader workers)."""

    def __init__(self, path: PathLike, entry: str, reason: str) -> None:
        super().__init__(os.fspath(path), entry, reason)
        self.path = os.fspath(path)
        self.entry = entry
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.entry}: {self.reason}"


@dataclass
class Skipped:
    """Entries a reader left out under ``on_error="skip"``, each with the error that says why."""

    errors: list[FormatError] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.errors)

    @property
    def entries(self) -> list[tuple[str, str]]:
        """``(entry, reason)`` for each entry left out."""
        return [(e.entry, e.reason) for e in self.errors]

    def add(self, error: FormatError) -> None:
        self.errors.append(error)

    def __str__(self) -> str:
        shown = "; ".join(str(e) for e in self.errors[:3])
        more = f"; and {self.count - 3} more" if self.count > 3 else ""
        return f"skipped {self.count} entries" + (f": {shown}{more}" if shown else "")


class Records(list[T], Generic[T]):
    """What a reader kept (a plain list of entries), with ``skipped``: what it left out."""

    def __init__(self, on_error: OnError, items: Iterable[T] = ()) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        super().__init__(items)
        self.on_error: OnError = on_error
        self.skipped = Skipped()

    def reject(self, error: FormatError) -> None:
        """Raise ``error``, or count it as skipped, as ``on_error`` says."""
        if self.on_error == "raise":
            raise error
        self.skipped.add(error)


def load_json(path: PathLike) -> Any:
    """Parse a JSON file; a missing or malformed file is a ``FormatError`` naming it."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FormatError(path, "file", "not found") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise FormatError(path, where, f"invalid JSON: {e.msg}") from None


def require_entries(data: Any, path: PathLike, what: str) -> None:
    """An annotation file with nothing in it is an error naming the file, not a crash later
    when the first batch is drawn from zero items."""
    if not data:
        raise FormatError(path, "top level", f"no {what}: the file is empty")


def dump_json(path: PathLike, data: Any) -> None:
    """Write ``data`` as UTF-8 JSON, creating the parent folder (writers build fresh trees)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)


def field_of(raw: Any, key: str, kind: type | tuple[type, ...], path: PathLike, entry: str) -> Any:
    """``raw[key]``, checked to be a JSON object holding ``key`` with a value of type ``kind``.

    ``bool`` is never accepted as a number, although Python counts it as an ``int``."""
    if not isinstance(raw, Mapping):
        raise FormatError(path, entry, f"expected a JSON object, got {type(raw).__name__}")
    if key not in raw:
        raise FormatError(path, entry, f"missing key {key!r} (has {sorted(raw)})")
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        kinds = (kind,) if isinstance(kind, type) else kind
        expected = " or ".join(k.__name__ for k in kinds)
        raise FormatError(path, entry, f"{key!r} must be {expected}, got {value!r}")
    return value
