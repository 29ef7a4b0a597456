"""Multiple-choice video question answering (TVQA / MSRVTT-MC style), which MERLOT finetunes
and evaluates on: questions about what happened and in which order.

One folder of videos and one annotation file per split::

    <root>/videos/<video_id>.mp4
    <root>/annotations/qa_{train,val,test}.json

An annotation file is one JSON list, one entry per question (a video usually has several)::

    [{"qid": "train00001_q0", "video_id": "train00001", "question": "what happens first?",
      "answers": ["the red ball grows", "the red ball appears", "...", "..."], "answer": 1},
     ...]

``answer`` is the 0-based index of the right option in ``answers``. Every question of a file has
the same number of options (the model scores them as one batch of candidates, and chance level
is ``1 / len(answers)``), so a question with a different count is an error, as is an index out of
range or an empty ``answers``. Ids are strings; ``qid`` is unique within a file. Videos that
could not be downloaded are checked for with ``video_root`` (and their questions skipped with
``on_error="skip"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidrepro.data.formats.errors import (
    FormatError,
    OnError,
    PathLike,
    Records,
    dump_json,
    field_of,
    load_json,
    require_entries,
)

VIDEO_DIR = "videos"
ANNOTATION_DIR = "annotations"
SUFFIX = ".mp4"


@dataclass(frozen=True)
class QAItem:
    qid: str
    video_id: str  # file name stem of <root>/videos/<video_id>.mp4
    question: str
    answers: tuple[str, ...]  # the options, same count for every item of a file
    answer: int  # index of the right option in ``answers``


def video_path(root: PathLike, video_id: str) -> Path:
    return Path(root) / VIDEO_DIR / f"{video_id}{SUFFIX}"


def annotation_path(root: PathLike, split: str) -> Path:
    return Path(root) / ANNOTATION_DIR / f"qa_{split}.json"


def _check_item(item: QAItem, count: int | None) -> None:
    """What the reader would reject, refused at writing time so a writer never makes a file
    its own reader fails on."""
    if not item.answers:
        raise ValueError(f"question {item.qid!r} has no answers")
    if not 0 <= item.answer < len(item.answers):
        raise ValueError(f"question {item.qid!r}: answer {item.answer} out of range")
    if count is not None and len(item.answers) != count:
        raise ValueError(f"question {item.qid!r} has {len(item.answers)} answers, others {count}")


def write_qa(path: PathLike, items: Iterable[QAItem]) -> None:
    rows, count = [], None
    for item in items:
        _check_item(item, count)
        count = len(item.answers)
        rows.append({"qid": item.qid, "video_id": item.video_id, "question": item.question,
                     "answers": list(item.answers), "answer": item.answer})
    dump_json(path, rows)


def _answers(raw: dict, path: PathLike, name: str) -> tuple[str, ...]:
    answers = field_of(raw, "answers", list, path, name)
    if not answers:
        raise FormatError(path, name, "'answers' is empty")
    for k, text in enumerate(answers):
        if not isinstance(text, str):
            raise FormatError(path, name, f"answers[{k}] must be str, got {text!r}")
    return tuple(answers)


def _item(raw: object, path: PathLike, name: str) -> QAItem:
    """One entry, checked on its own (the checks that need other entries are the caller's)."""
    qid = str(field_of(raw, "qid", (str, int), path, name))
    name = f"{name} (qid {qid!r})"
    video_id = str(field_of(raw, "video_id", (str, int), path, name))
    question = field_of(raw, "question", str, path, name)
    answers = _answers(raw, path, name)
    answer = field_of(raw, "answer", int, path, name)
    if not 0 <= answer < len(answers):
        problem = f"answer index {answer} is out of range for {len(answers)} answers"
        raise FormatError(path, name, problem)
    return QAItem(qid, video_id, question, answers, answer)


class _FileChecks:
    """The checks across entries: one answer count per file, unique qids, videos present
    (one stat per video, not one per question)."""

    def __init__(self, path: PathLike, video_root: PathLike | None) -> None:
        self.path, self.video_root = path, video_root
        self.count: tuple[int, str] | None = None  # answers per item, and who set it
        self.qids: set[str] = set()
        self.exists: dict[str, bool] = {}

    def check(self, item: QAItem, name: str) -> None:
        name = f"{name} (qid {item.qid!r})"
        if item.qid in self.qids:
            raise FormatError(self.path, name, "qid is listed twice")
        if self.count is not None and len(item.answers) != self.count[0]:
            problem = f"has {len(item.answers)} answers, but {self.count[1]} has {self.count[0]}"
            raise FormatError(self.path, name, problem)
        if self.video_root is not None:
            video = Path(self.video_root) / f"{item.video_id}{SUFFIX}"
            if item.video_id not in self.exists:
                self.exists[item.video_id] = video.is_file()
            if not self.exists[item.video_id]:
                raise FormatError(self.path, name, f"video file {video} not found")
        self.qids.add(item.qid)
        self.count = self.count or (len(item.answers), name)


def read_qa(
    path: PathLike,
    video_root: PathLike | None = None,
    on_error: OnError = "raise",
) -> Records[QAItem]:
    """Questions in file order. ``video_root`` is the folder holding ``<video_id>.mp4``
    (``<root>/videos``); with it, a question whose video is missing is an error. The first
    entry kept sets the answer count the others must have. Any bad entry is an error or, with
    ``on_error="skip"``, left out and counted."""
    data = load_json(path)
    if not isinstance(data, list):
        problem = f"expected a list of questions, got {type(data).__name__}"
        raise FormatError(path, "top level", problem)
    require_entries(data, path, "questions")
    out: Records[QAItem] = Records(on_error)
    checks = _FileChecks(path, video_root)
    for i, raw in enumerate(data):
        try:
            item = _item(raw, path, f"entry {i}")
            checks.check(item, f"entry {i}")
        except FormatError as e:
            out.reject(e)
            continue
        out.append(item)
    return out


def by_video(items: Sequence[QAItem]) -> dict[str, list[QAItem]]:
    """Questions grouped by video, videos and questions in file order."""
    out: dict[str, list[QAItem]] = {}
    for item in items:
        out.setdefault(item.video_id, []).append(item)
    return out
