"""The soundtrack of a :class:`~.world.Scene`.

Each shape has a pitch and each audible event its own shape of sound (a rising chirp when
something grows, a falling one when it shrinks, a burst when it splits, ...), so an audio model
can tell *what kind* of thing happened and to *which shape*, but not its colour; moves, bounces
and colour changes are silent, and the ``sound`` events (bell, drum, whistle, buzzer) have no
picture. Bi-modal models then have something to gain over either modality alone.
"""

from __future__ import annotations

import numpy as np

from .world import Event, Scene

SAMPLE_RATE = 16000
SHAPE_PITCH_HZ = {"circle": 440.0, "square": 311.0, "triangle": 587.0, "star": 784.0}


def _tone(freq: np.ndarray, sr: int) -> np.ndarray:
    """A sine following the instantaneous frequency ``freq`` (N,)."""
    return np.sin(2 * np.pi * np.cumsum(freq) / sr)


def event_sound(event: Event, shape: str | None, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) float32 waveform of one audible event, N = its duration in samples."""
    n = max(int(round((event.end - event.start) * sr)), 1)
    p = np.linspace(0, 1, n, endpoint=False)  # (N,) progress through the event
    k = event.kind
    if k == "sound":
        if event.arg == "bell":
            wave = _tone(np.full(n, 1568.0), sr) * np.exp(-4 * p)
        elif event.arg == "drum":
            beats = np.exp(-30 * ((p * 4) % 1))  # four hits
            wave = beats * (0.6 * rng.normal(0, 1, n) + _tone(np.full(n, 90.0), sr))
        elif event.arg == "whistle":
            wave = _tone(2200 + 900 * np.sin(2 * np.pi * 3 * p), sr)
        elif event.arg == "buzzer":
            wave = np.sign(_tone(np.full(n, 220.0), sr)) * 0.6
        else:
            raise ValueError(f"unknown sound {event.arg!r}")
        return (0.5 * wave).astype(np.float32)
    base = SHAPE_PITCH_HZ[shape]
    if k == "grow":
        wave = _tone(base * (1 + 0.6 * p), sr)
    elif k == "shrink":
        wave = _tone(base * (1.6 - 0.6 * p), sr)
    elif k == "split":
        wave = _tone(np.full(n, base), sr) * (p < 0.6) + 0.8 * rng.normal(0, 1, n) * (p >= 0.6)
    elif k == "appear":
        wave = _tone(np.full(n, base), sr) * p
    elif k == "disappear":
        wave = _tone(np.full(n, base), sr) * (1 - p)
    else:
        raise ValueError(f"event kind {k!r} is silent")
    return (0.4 * wave).astype(np.float32)


def soundtrack(scene: Scene, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """(duration * sr,) float32 mono in [-1, 1]: the audible events over faint noise."""
    rng = np.random.default_rng(seed)
    out = rng.normal(0, 0.01, int(round(scene.duration * sr))).astype(np.float32)
    for e in scene.ordered_events():
        if not e.audible:
            continue
        shape = scene.objects[e.obj].shape if e.obj is not None else None
        wave = event_sound(e, shape, sr, rng)
        start = int(round(e.start * sr))
        stop = min(start + len(wave), len(out))
        out[start:stop] += wave[: stop - start]
    return np.clip(out, -1, 1)
