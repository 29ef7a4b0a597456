"""Object-state-change videos in the spirit of ChangeIt: uncurated, noisy, mostly background.

Each category is an object, an action done to it with a tool, and the object's look before and
after (``inflating_circle``: a small circle, a pump works, a big circle). A video is background
clutter, the initial state, the action, the end state, and more clutter, labelled per second
0 background / 1 initial / 2 action / 3 end as ChangeIt annotates its test videos. What makes the
paper's ideas matter here:

- look-alikes: the clutter may show the *end* look before the action and the *initial* look after
  it, so a per-frame argmax picks them while the ordering constraint (initial < action < end)
  does not;
- noise: some training videos never show the change (only clutter, or the object without the
  action), with lower relevance scores, as ChangeIt's uncurated YouTube results do; the noise
  adaptive weight turns those scores into how much a video counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenes import random_object
from .world import BACKGROUNDS, Event, Obj, Scene

LABELS = {"background": 0, "initial": 1, "action": 2, "end": 3}


@dataclass(frozen=True)
class StateCategory:
    name: str  # DIR_NAME in categories.csv
    action: str  # ACTION_NAME
    shape: str
    colour: str
    size: float
    change: tuple[tuple[str, str | None], ...]  # (event kind, arg) done during the action


CATEGORIES = (
    StateCategory("inflating_circle", "inflate", "circle", "red", 0.09, (("grow", None),)),
    StateCategory("painting_square", "paint", "square", "yellow", 0.12,
                  (("change_colour", "blue"),)),
    StateCategory("cutting_triangle", "cut", "triangle", "orange", 0.13, (("split", None),)),
    StateCategory("deflating_star", "deflate", "star", "green", 0.15, (("shrink", None),)),
    StateCategory("dyeing_circle", "dye", "circle", "purple", 0.12, (("change_colour", "green"),)),
    StateCategory("stretching_square", "stretch", "square", "blue", 0.08, (("grow", None),)),
)


@dataclass(frozen=True)
class StateVideo:
    scene: Scene
    labels: np.ndarray  # (seconds,) int, LABELS values at t = 0, 1, 2, ...
    has_change: bool


def _clutter(rng: np.random.Generator, start: float, end: float,
             lookalike: tuple[StateCategory, bool] | None,
             first_index: int) -> tuple[list[Obj], list[Event]]:
    """Unrelated shapes showing up between start and end; the first may be a look-alike of a
    category's object, already changed (``(category, True)``: the end look) or not."""
    objects, events = [], []
    t = start
    while end - t >= 2.0:
        stay = float(rng.uniform(2.0, min(5.0, end - t)))
        i = first_index + len(objects)
        if lookalike is not None and not objects:
            category, changed = lookalike
            obj = Obj(category.shape, category.colour, float(rng.uniform(0.3, 0.7)),
                      float(rng.uniform(0.3, 0.7)), category.size)
            if changed:  # the change happens while it fades in: it is only seen changed
                events += [Event(kind, t, t + 0.25, i, arg) for kind, arg in category.change]
        else:
            obj = random_object(rng)
        objects.append(obj)
        events += [Event("appear", t, t + 0.25, i), Event("disappear", t + stay - 0.25, t + stay, i)]
        t += stay + float(rng.uniform(0, 1.5))
    return objects, events


def state_video(category: StateCategory, rng: np.random.Generator, *, has_change: bool = True,
                lookalike_prob: float = 0.5) -> StateVideo:
    """One video of ``category``: clutter, initial state, action, end state, clutter."""
    pre, init, act, end, post = (float(rng.uniform(*r)) for r in
                                 ((2, 8), (3, 6), (3, 5), (3, 6), (2, 8)))
    t_init, t_act, t_end, t_post = pre, pre + init, pre + init + act, pre + init + act + end
    duration = float(np.ceil(t_post + post))
    hero = Obj(category.shape, category.colour, float(rng.uniform(0.4, 0.6)),
               float(rng.uniform(0.4, 0.6)), category.size)
    tool = Obj("bar", "white", hero.x + 0.22, hero.y, 0.12)
    objects = [hero, tool]
    events = [Event("appear", t_init, t_init + 0.25, 0)]
    if has_change:
        events += [Event(kind, t_act + 0.2, t_end - 0.2, 0, arg) for kind, arg in category.change]
        events += [Event("appear", t_act, t_act + 0.2, 1), Event("bounce", t_act + 0.2, t_end - 0.2, 1),
                   Event("disappear", t_end - 0.2, t_end, 1)]
        events.append(Event("disappear", t_post - 0.25, t_post, 0))
    else:  # the object is shown, nothing happens to it (a common uncurated result)
        events.append(Event("disappear", t_act - 0.25, t_act, 0))
    # Clutter before and after; look-alikes of the end state before, of the initial after.
    end_like = (category, True) if rng.random() < lookalike_prob else None
    init_like = (category, False) if rng.random() < lookalike_prob else None
    for (lo, hi), like in (((0.0, t_init), end_like), ((t_post, duration), init_like)):
        more, ev = _clutter(rng, lo, hi, like, len(objects))
        objects += more
        events += ev
    scene = Scene(duration, list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))], tuple(objects),
                  tuple(events))
    seconds = np.arange(int(duration))
    labels = np.zeros(len(seconds), np.int64)
    if has_change:
        labels[(seconds >= t_init + 0.25) & (seconds < t_act)] = LABELS["initial"]
        labels[(seconds >= t_act + 0.2) & (seconds < t_end - 0.2)] = LABELS["action"]
        labels[(seconds >= t_end) & (seconds < t_post - 0.25)] = LABELS["end"]
    return StateVideo(scene, labels, has_change)


def relevance(has_change: bool, rng: np.random.Generator) -> float:
    """A retrieval-style relevance score: videos with the change tend to score higher."""
    return float(np.clip(rng.normal(0.72, 0.12) if has_change else rng.normal(0.4, 0.15), 0, 1))


