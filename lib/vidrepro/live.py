"""What the terminal shows while notebooks run headless: one status line per running step.

A line reads ``[row] step 2:31 | finetune (XE) 90/400 loss=1.41 ETA 0:12``: the step's elapsed
time and the kernel's current progress bar (count of total, its postfix, its ETA). On a terminal
each line is redrawn in place; elsewhere (CI logs, files) a plain line is printed at most every
``plain_every`` seconds and once at the end. The bars reach the runner as the text the kernel
writes to stderr, which papermill streams to :class:`Status`; :func:`text_bars` runs in every
headless kernel so that bars are text there even where ipywidgets would draw widgets.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from typing import TextIO

from tqdm.std import tqdm

BAR = re.compile(
    r"(?:(?P<desc>[^|]*?): *)?\d+%\|[^|]*\| *(?P<n>\d+)/(?P<total>\d+)"
    r" \[[\d:]+<(?P<eta>[\d:?]+)(?:, *[^,\]]*)?(?:, *(?P<postfix>[^\]]*))?\]"
)


def text_bars() -> None:
    """Make ``tqdm.auto`` draw text bars in this kernel (the runner reads them), not widgets."""
    import warnings

    import tqdm.auto as auto
    from tqdm import std

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto.tqdm, auto.trange = std.tqdm, std.trange


KERNEL_STARTUP = "import vidrepro.live; vidrepro.live.text_bars()"


def parse(text: str) -> str | None:
    """The last progress-bar state in ``text`` as ``desc n/total postfix ETA m:ss``; None if
    ``text`` holds no bar."""
    found = None
    for segment in re.split(r"[\r\n]", text):
        if m := BAR.search(segment):
            found = m
    if found is None:
        return None
    parts = [found["desc"] or "", f"{found['n']}/{found['total']}", found["postfix"] or ""]
    if found["eta"] != "?":
        parts.append(f"ETA {found['eta']}")
    return " ".join(p for p in parts if p)


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}" if minutes >= 60 else f"{minutes}:{s:02d}"


class Status:
    """One running step's status line, fed the kernel's stderr (a file-like ``write``)."""

    def __init__(self, label: str, stream: TextIO | None = None, plain_every: float = 30.0):
        self.label, self.stream, self.plain_every = label, stream or sys.stderr, plain_every
        self.state, self.start, self.shown = "starting", time.monotonic(), 0.0
        self._lock = threading.Lock()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = (
            tqdm(
                total=None,
                bar_format="{desc}",
                desc=self.line(),
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
            )
            if self.tty
            else None
        )
        self.shown = time.monotonic()

    def line(self) -> str:
        return f"{self.label} {_clock(time.monotonic() - self.start)} | {self.state}"

    def write(self, text: str) -> int:
        with self._lock:
            if (state := parse(text)) is not None:
                self.state = state
            now = time.monotonic()
            if self.bar is not None and now - self.shown >= 0.5:
                self.bar.set_description_str(self.line())
                self.shown = now
            elif self.bar is None and now - self.shown >= self.plain_every:
                tqdm.write(self.line(), file=self.stream)
                self.shown = now
        return len(text)

    def flush(self) -> None:
        pass

    def close(self, outcome: str) -> None:
        """Remove the live line; print the step's last state with ``outcome``."""
        with self._lock:
            if self.bar is not None:
                self.bar.close()
            tqdm.write(f"{self.line()} | {outcome}", file=self.stream)
