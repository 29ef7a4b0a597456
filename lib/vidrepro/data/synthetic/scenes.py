"""Random scripts for the synthetic world, one sampler per kind of data.

Events follow a small "script": an object appears before it does anything, disappears or splits
last, changes to a colour it does not already have, and only moves where it stays in frame.
Stories and pretraining videos draw their event chains from :data:`SCRIPT`, a Markov chain of
what usually follows what, which is the "script knowledge" MERLOT's temporal objectives can
learn: order is predictable from content, not only from position.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .world import COLOURS, MOVE_DISTANCE, MOVES, SHAPES, SOUNDS, BACKGROUNDS, Event, Obj, Scene

# What tends to follow what (weights, normalised at sampling time).
SCRIPT: dict[str, dict[str, float]] = {
    "appear": {"grow": 3, "bounce": 2, "move": 2, "change_colour": 1},
    "grow": {"change_colour": 2, "split": 3, "move": 1, "bounce": 1},
    "bounce": {"grow": 2, "move": 2, "change_colour": 1},
    "move": {"bounce": 1, "shrink": 2, "change_colour": 2, "grow": 1},
    "change_colour": {"shrink": 2, "move": 2, "split": 2, "grow": 1},
    "shrink": {"disappear": 4, "move": 1},
    "split": {"end": 1},
    "disappear": {"end": 1},
}


@dataclass
class _Tracker:
    """Where an object is and what it may still do, while its events are drawn."""

    obj: Obj
    x: float
    y: float
    colour: str
    appeared: bool = False
    gone: bool = False  # split or disappeared: no more events

    def allowed(self, kind: str) -> bool:
        if self.gone:
            return False
        if kind in MOVES:
            dx, dy = MOVES[kind]
            x, y = self.x + dx * MOVE_DISTANCE, self.y + dy * MOVE_DISTANCE
            return 0.12 <= x <= 0.88 and 0.12 <= y <= 0.88
        return kind != "appear" or not self.appeared

    def update(self, event: Event) -> None:
        if event.kind in MOVES:
            dx, dy = MOVES[event.kind]
            self.x += dx * MOVE_DISTANCE
            self.y += dy * MOVE_DISTANCE
        elif event.kind == "change_colour":
            self.colour = event.arg
        elif event.kind in ("split", "disappear"):
            self.gone = True
        self.appeared = True


def random_object(rng: np.random.Generator, shape: str | None = None) -> Obj:
    return Obj(shape or SHAPES[rng.integers(len(SHAPES))],
               list(COLOURS)[rng.integers(len(COLOURS))],
               float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7)),
               float(rng.uniform(0.08, 0.13)))


def image_scene(rng: np.random.Generator) -> tuple[Scene, float]:
    """A photo of the world for the image corpus: 1-2 objects at any size and place, some
    split in two; returns the scene and the time to render it at (after every split)."""
    objects, events = [], []
    for i in range(1 + (rng.random() < 0.4)):
        objects.append(replace(random_object(rng), x=float(rng.uniform(0.15, 0.85)),
                               y=float(rng.uniform(0.15, 0.85)),
                               size=float(rng.uniform(0.05, 0.2))))
        if rng.random() < 0.2:
            events.append(Event("split", 0.0, 0.5, i))
    return Scene(1.0, _pick(rng, list(BACKGROUNDS)), tuple(objects), tuple(events)), 1.0


def still_scene(rng: np.random.Generator) -> Scene:
    """One or two objects standing still: an image with a static caption."""
    objects = tuple(random_object(rng) for _ in range(1 + (rng.random() < 0.4)))
    return Scene(1.0, _pick(rng, list(BACKGROUNDS)), objects)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[rng.integers(len(options))]


def _event(rng: np.random.Generator, tracker: _Tracker, kind: str, start: float, end: float,
           index: int) -> Event | None:
    """A concrete event of abstract ``kind`` ("move" picks a direction), or None if not allowed."""
    if kind == "move":
        moves = [m for m in MOVES if tracker.allowed(m)]
        if not moves:
            return None
        kind = _pick(rng, moves)
    if not tracker.allowed(kind):
        return None
    arg = _pick(rng, [c for c in COLOURS if c != tracker.colour]) if kind == "change_colour" else None
    event = Event(kind, start, end, index, arg)
    tracker.update(event)
    return event


def slots(duration: float, n: int, rng: np.random.Generator, fill: float = 0.75) -> list[tuple[float, float]]:
    """``n`` consecutive, non-overlapping (start, end) windows covering about ``fill`` of the clip."""
    width = duration / n
    out = []
    for i in range(n):
        length = width * fill * rng.uniform(0.8, 1.0)
        start = i * width + rng.uniform(0, width - length)
        out.append((round(start, 3), round(start + length, 3)))
    return out


def caption_clip(rng: np.random.Generator, duration: float = 3.0, max_events: int = 2,
                 sound_prob: float = 0.15, min_events: int = 1) -> Scene:
    """1-2 objects, min_events..max_events events one after another, sometimes a sound instead
    of one (``sound_prob=0``: every event is seen)."""
    objects = [random_object(rng) for _ in range(1 + (rng.random() < 0.3))]
    trackers = [_Tracker(o, o.x, o.y, o.colour) for o in objects]
    events: list[Event] = []
    kinds = ["move", "grow", "shrink", "change_colour", "split", "appear", "disappear", "bounce"]
    for start, end in slots(duration, int(rng.integers(min_events, max_events + 1)), rng):
        if rng.random() < sound_prob:
            events.append(Event("sound", start, end, None, _pick(rng, list(SOUNDS))))
            continue
        for _ in range(10):
            i = int(rng.integers(len(objects)))
            kind = _pick(rng, kinds if not events else [k for k in kinds if k != "appear"])
            if (event := _event(rng, trackers[i], kind, start, end, i)) is not None:
                events.append(event)
                break
    return Scene(duration, _pick(rng, list(BACKGROUNDS)), tuple(objects), tuple(events))


TERMINAL = ("split", "disappear")


def video_clip(rng: np.random.Generator, duration: float, events: tuple[int, int] = (3, 4)
               ) -> Scene:
    """A captioning video: 1-2 objects and events[0]..events[1] events one after another, all
    of them seen (no sounds): an object appears only first and splits or disappears only
    last, so that every slot has something to show."""
    objects = [random_object(rng) for _ in range(1 + (rng.random() < 0.3))]
    trackers = [_Tracker(o, o.x, o.y, o.colour) for o in objects]
    n = int(rng.integers(events[0], events[1] + 1))
    out: list[Event] = []
    for k, (start, end) in enumerate(slots(duration, n, rng)):
        kinds = ["move", "grow", "shrink", "change_colour", "bounce"]
        kinds += ["appear"] * (k == 0) + list(TERMINAL) * (k == n - 1)
        for _ in range(20):
            i = int(rng.integers(len(objects)))
            if (event := _event(rng, trackers[i], _pick(rng, kinds), start, end, i)) is not None:
                out.append(event)
                break
    return Scene(duration, _pick(rng, list(BACKGROUNDS)), tuple(objects), tuple(out))


def script_chain(rng: np.random.Generator, length: int, opening: bool = True) -> list[str]:
    """Abstract event kinds following :data:`SCRIPT`, starting with ``appear``; an object
    only splits or disappears at the last step, so every step has something to show. Without
    the ``opening`` the chain is joined after its ``appear`` (a video that starts mid-story)."""
    chain = ["appear"]
    length += not opening
    while len(chain) < length:
        nxt = SCRIPT[chain[-1]]
        last = len(chain) == length - 1
        options = [k for k in nxt if k != "end" and (last or k not in TERMINAL)] or ["move"]
        weights = np.array([nxt[k] if k in nxt else 1.0 for k in options], float)
        chain.append(options[rng.choice(len(options), p=weights / weights.sum())])
    return chain if opening else chain[1:]


def scripted_clip(rng: np.random.Generator, steps: int, step_seconds: float,
                  distractor: bool = True, opening: bool = True) -> tuple[Scene, list[Event]]:
    """One object living through a :func:`script_chain`, one event per step (stories and
    pretraining videos); a second, idle object may stand by. Without the ``opening`` the
    object is in view from the start and the chain is joined after its ``appear``. Returns the
    scene and, per step, its event."""
    hero = random_object(rng)
    objects = [hero] + ([random_object(rng)] if distractor and rng.random() < 0.5 else [])
    tracker = _Tracker(hero, hero.x, hero.y, hero.colour, appeared=not opening)
    duration = steps * step_seconds
    windows = slots(duration, steps, rng, fill=0.6)
    events: list[Event] = []
    for (start, end), kind in zip(windows, script_chain(rng, steps, opening)):
        event = _event(rng, tracker, kind, start, end, 0)
        if event is None:  # the script asked for something impossible here: fall back
            event = next(e for k in ("bounce", "move", "grow")
                         if (e := _event(rng, tracker, k, start, end, 0)) is not None)
        events.append(event)
    return Scene(duration, _pick(rng, list(BACKGROUNDS)), tuple(objects), tuple(events)), events
