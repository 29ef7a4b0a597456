"""Words for the synthetic world: a small grammar with synonyms and paraphrases.

A clip gets several different references (like MSR-VTT's 20 per video) that all say the same
thing, and captions are temporal ("a red circle grows, then moves left"), so a caption needs
more than one frame. The vocabulary stays around two hundred words: tiny models can learn it.
"""

from __future__ import annotations

import re

import numpy as np

from .world import COLOURS, Event, Obj, Scene

SHAPE_WORDS = {
    "circle": ("circle", "ball", "disc", "round shape"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "three sided shape"),
    "star": ("star", "star shape"),
}
EVENT_PHRASES = {
    "move_left": ("moves left", "slides to the left", "goes left", "moves to the left"),
    "move_right": ("moves right", "slides to the right", "goes right", "moves to the right"),
    "move_up": ("moves up", "rises", "goes up", "floats upward"),
    "move_down": ("moves down", "sinks", "goes down", "drops downward"),
    "grow": ("grows", "gets bigger", "becomes larger", "expands"),
    "shrink": ("shrinks", "gets smaller", "becomes smaller", "contracts"),
    "change_colour": ("turns {colour}", "changes colour to {colour}", "becomes {colour}"),
    "split": ("splits in two", "breaks into two pieces", "divides in half", "splits apart"),
    "appear": ("appears", "shows up", "pops into view", "comes into view"),
    "disappear": ("disappears", "vanishes", "fades away", "goes out of view"),
    "bounce": ("bounces", "jumps up and down", "hops twice", "bounces up and down"),
}
SOUND_PHRASES = {
    "bell": ("a bell rings", "a bell chimes", "you can hear a bell"),
    "drum": ("a drum beats", "someone plays a drum", "drum beats are heard"),
    "whistle": ("a whistle blows", "someone whistles", "a whistle sounds"),
    "buzzer": ("a buzzer sounds", "a buzzer goes off", "you hear a buzzer"),
}
THEN = ("then", "and then", "after that", "and next")
BACKGROUND_WORDS = {"dark": "a dark", "sand": "a sandy", "sky": "a light blue", "grass": "a green"}
FILLERS = ("so", "um", "okay", "now", "alright", "you see", "look")
OFF_TOPIC = ("thanks for watching", "do not forget to subscribe", "let me know in the comments",
             "that is it for today", "welcome back to the channel")


def colour_at(scene: Scene, index: int, t: float) -> str:
    """The colour name of object ``index`` once the colour changes begun before ``t`` are done."""
    colour = scene.objects[index].colour
    for e in scene.ordered_events():
        if e.obj == index and e.kind == "change_colour" and e.start < t:
            colour = e.arg
    return colour


def noun_phrase(obj: Obj, rng: np.random.Generator, definite: bool = False,
                colour: str | None = None) -> str:
    shape = SHAPE_WORDS[obj.shape][rng.integers(len(SHAPE_WORDS[obj.shape]))]
    article = "the" if definite else "a"
    return f"{article} {colour or obj.colour} {shape}"


def subject(scene: Scene, event: Event, rng: np.random.Generator, definite: bool = False) -> str:
    """How to name the object of ``event`` as it looks when the event starts."""
    return noun_phrase(scene.objects[event.obj], rng, definite,
                       colour_at(scene, event.obj, event.start))


def clause(event: Event, scene: Scene, rng: np.random.Generator, name: str) -> str:
    if event.kind == "sound":
        options = SOUND_PHRASES[event.arg]
        return options[rng.integers(len(options))]
    options = EVENT_PHRASES[event.kind]
    verb = options[rng.integers(len(options))].format(colour=event.arg)
    return f"{name} {verb}"


def describe(scene: Scene, rng: np.random.Generator) -> str:
    """One caption of the whole clip, events in time order."""
    parts: list[str] = []
    last_obj: int | None = None
    seen: set[int] = set()
    for event in scene.ordered_events():
        if event.obj is None:
            name = ""
        elif event.obj == last_obj and rng.random() < 0.7:
            name = "it"
        else:
            name = subject(scene, event, rng, definite=event.obj in seen)
            seen.add(event.obj)
        parts.append(clause(event, scene, rng, name).strip())
        last_obj = event.obj
    if not parts:
        return static_description(scene, rng)
    text = parts[0]
    for part in parts[1:]:
        text += f", {THEN[rng.integers(len(THEN))]} {part}" if rng.random() < 0.8 else f" and {part}"
    return text


def references(scene: Scene, rng: np.random.Generator, n: int, tries: int = 20) -> list[str]:
    """``n`` captions of the clip, distinct where the grammar allows."""
    out: list[str] = []
    for _ in range(n * tries):
        caption = describe(scene, rng)
        if caption not in out:
            out.append(caption)
        if len(out) == n:
            break
    while len(out) < n:  # a one-event clip may have fewer paraphrases than asked for
        out.append(out[len(out) % len(out)])
    return out


def static_description(scene: Scene, rng: np.random.Generator) -> str:
    """What a single frame shows: the objects and the background (image-text pairs)."""
    nps = [noun_phrase(o, rng) for o in scene.objects]
    things = nps[0] if len(nps) == 1 else ", ".join(nps[:-1]) + " and " + nps[-1]
    return f"{things} on {BACKGROUND_WORDS[scene.background]} background"


def _where(x: float, y: float) -> str:
    row = "top" if y < 0.38 else "bottom" if y > 0.62 else ""
    col = "left" if x < 0.38 else "right" if x > 0.62 else ""
    return f"at the {row} {col}".replace("  ", " ") if row and col else \
        f"at the {row or col}" if row or col else "in the middle"


def image_description(scene: Scene, rng: np.random.Generator) -> str:
    """A photo's caption (the image corpus): each object's size, colour, shape, whether it is
    in two pieces and where it is, then the background."""
    split = {e.obj for e in scene.events if e.kind == "split"}
    nps = []
    for i, o in enumerate(scene.objects):
        size = "small" if o.size < 0.1 else "big" if o.size > 0.15 else ""
        text = noun_phrase(o, rng).replace("a ", f"a {size} " if size else "a ", 1)
        nps.append(f"{text}{' in two pieces' if i in split else ''} {_where(o.x, o.y)}")
    things = " and ".join(nps)
    return f"{things} on {BACKGROUND_WORDS[scene.background]} background"


def _event_patterns() -> list[tuple[re.Pattern, str]]:
    colours = "|".join(COLOURS)
    phrases = [(ph.replace("{colour}", f"(?:{colours})"), kind)
               for kind, options in EVENT_PHRASES.items() for ph in options]
    phrases.sort(key=lambda pk: -len(pk[0]))  # "bounces up and down" before "bounces"
    return [(re.compile(rf"\b{ph}\b"), kind) for ph, kind in phrases]


_PATTERNS = _event_patterns()


def event_kinds(text: str) -> list[str]:
    """The event kinds a caption of this grammar names, in order (moves by direction): what
    a generated caption can be checked against, event by event."""
    found, taken = [], [False] * len(text)
    for pattern, kind in _PATTERNS:
        for m in pattern.finditer(text):
            if not any(taken[m.start():m.end()]):
                taken[m.start():m.end()] = [True] * (m.end() - m.start())
                found.append((m.start(), kind))
    return [kind for _, kind in sorted(found)]


def narration(text: str, rng: np.random.Generator, noise: float) -> str:
    """A transcript line as ASR gives it: fillers, dropped words, now and then off topic."""
    if rng.random() < noise / 2:
        return OFF_TOPIC[rng.integers(len(OFF_TOPIC))]
    words = [w for w in text.split() if rng.random() > noise / 3]
    if rng.random() < noise:
        words.insert(0, FILLERS[rng.integers(len(FILLERS))])
    return " ".join(words) or text
