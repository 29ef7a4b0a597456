"""The synthetic world: coloured shapes on backgrounds doing timed things.

A :class:`Scene` is a script (objects and timed events); :func:`state_at` says what every object
looks like at time t. Rendering (``render.py``), sound (``audio.py``) and language
(``language.py``) all read the same script, so a caption, a frame and a sound of one clip always
agree, and the dataset builders can make each paper's claim matter: events that only several
frames reveal, events that are heard but not seen (and seen but silent), changes of state whose
order is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

SHAPES = ("circle", "square", "triangle", "star")
TOOL_SHAPES = ("bar",)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 70),
    "blue": (50, 90, 235),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
# Not drawn at random: the tools that perform the object-state actions.
TOOL_COLOURS: dict[str, tuple[int, int, int]] = {"white": (245, 245, 245), "grey": (128, 128, 128)}
PALETTE = {**COLOURS, **TOOL_COLOURS}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "dark": (28, 28, 36),
    "sand": (196, 178, 140),
    "sky": (150, 190, 228),
    "grass": (62, 112, 62),
}
MOVES = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
OBJECT_EVENTS = (*MOVES, "grow", "shrink", "change_colour", "split", "appear", "disappear",
                 "bounce")
SOUNDS = ("bell", "drum", "whistle", "buzzer")
# Seen but not heard: an audio-only model cannot know these happened.
SILENT_EVENTS = frozenset({*MOVES, "change_colour", "bounce"})
MOVE_DISTANCE = 0.35  # of the frame width
GROW, SHRINK = 1.7, 0.55  # size factors at the end of grow / shrink
SPLIT_GAP = 0.22  # how far the two halves end up apart, of the frame width


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    x: float  # centre, fraction of width
    y: float  # centre, fraction of height
    size: float  # radius, fraction of the frame side


@dataclass(frozen=True)
class Event:
    kind: str  # an OBJECT_EVENT, or "sound"
    start: float  # seconds
    end: float
    obj: int | None = None  # index into Scene.objects; None for sounds
    arg: str | None = None  # the new colour of change_colour; the sound of "sound"

    @property
    def audible(self) -> bool:
        return self.kind == "sound" or self.kind not in SILENT_EVENTS

    @property
    def visible(self) -> bool:
        return self.kind != "sound"


@dataclass(frozen=True)
class Scene:
    duration: float
    background: str
    objects: tuple[Obj, ...]
    events: tuple[Event, ...] = field(default=())

    def __post_init__(self):
        for e in self.events:
            if not 0 <= e.start < e.end <= self.duration + 1e-9:
                raise ValueError(f"event {e} outside [0, {self.duration}]")
            if e.kind != "sound" and not (e.obj is not None and 0 <= e.obj < len(self.objects)):
                raise ValueError(f"event {e} names no object")

    def ordered_events(self) -> list[Event]:
        return sorted(self.events, key=lambda e: (e.start, e.end))


@dataclass(frozen=True)
class ObjState:
    shape: str
    colour: tuple[float, float, float]
    x: float
    y: float
    size: float
    alpha: float = 1.0
    split: float = 0.0  # distance between the two halves; 0 = whole


def progress(t: float, event: Event) -> float:
    """Smoothstep progress of ``event`` at time ``t``: 0 before, 1 after."""
    p = min(max((t - event.start) / (event.end - event.start), 0.0), 1.0)
    return p * p * (3 - 2 * p)


def initial_state(obj: Obj, events: list[Event]) -> ObjState:
    """An object that ``appear``s is invisible until it does."""
    alpha = 0.0 if any(e.kind == "appear" for e in events) else 1.0
    return ObjState(obj.shape, PALETTE[obj.colour], obj.x, obj.y, obj.size, alpha)


def apply(state: ObjState, event: Event, p: float) -> ObjState:
    k = event.kind
    if k in MOVES:
        dx, dy = MOVES[k]
        return replace(state, x=state.x + dx * MOVE_DISTANCE * p, y=state.y + dy * MOVE_DISTANCE * p)
    if k == "grow":
        return replace(state, size=state.size * (1 + (GROW - 1) * p))
    if k == "shrink":
        return replace(state, size=state.size * (1 - (1 - SHRINK) * p))
    if k == "change_colour":
        new = PALETTE[event.arg]
        return replace(state, colour=tuple((1 - p) * a + p * b for a, b in zip(state.colour, new)))
    if k == "split":
        return replace(state, split=state.split + SPLIT_GAP * p)
    if k == "appear":
        return replace(state, alpha=max(state.alpha, p))
    if k == "disappear":
        return replace(state, alpha=state.alpha * (1 - p))
    if k == "bounce":  # two hops up and back, ending where it started
        return replace(state, y=state.y - 0.18 * abs(math.sin(2 * math.pi * p)) * (0 < p < 1))
    raise ValueError(f"unknown event kind {k!r}")


def state_at(scene: Scene, t: float) -> list[ObjState]:
    out = []
    for i, obj in enumerate(scene.objects):
        events = [e for e in scene.ordered_events() if e.obj == i]
        state = initial_state(obj, events)
        for e in events:  # every event is the identity before it starts (p = 0)
            state = apply(state, e, progress(t, e))
        out.append(state)
    return out


def frame_times(duration: float, fps: float) -> np.ndarray:
    """(T,) the time each rendered frame shows."""
    return np.arange(int(round(duration * fps))) / fps
