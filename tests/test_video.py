"""vidrepro.video on videos written in tmp_path.

Each frame carries its own index as three base-16 digits in flat grey bands (readable after lossy
compression), above a band of moving noise that gives P and B frames real residuals to decode.
The fast paths are checked against a plain decode-everything loop with ``array_equal``.
"""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vidrepro.video import (
    VideoDecodeError,
    VideoInfo,
    decode,
    probe,
    read_audio,
    sample_frames,
    write_video,
)

W, H = 80, 64  # non-square, and bands of 16 rows sit on whole macroblocks


def make_frames(n: int, width: int = W, height: int = H) -> np.ndarray:
    """(n, height, width, 3): index digits in the top three bands, moving noise below."""
    band = height // 4
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height - 3 * band, 2 * width, 3), np.uint8)
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        for d in range(3):
            frames[i, d * band : (d + 1) * band] = ((i >> (4 * (2 - d))) & 15) * 16 + 8
        frames[i, 3 * band :] = np.roll(texture, 3 * i, axis=1)[:, :width]
    return frames


def read_index(frame: np.ndarray) -> int:
    band = frame.shape[0] // 4
    means = [frame[d * band + 3 : (d + 1) * band - 3, 3:-3].mean() for d in range(3)]
    digits = [round((m - 8) / 16) for m in means]  # band margins skip compression ringing
    return digits[0] * 256 + digits[1] * 16 + digits[2]


def decode_everything(path: Path) -> tuple[np.ndarray, list[Fraction]]:
    """The reference: every frame in decoder order, and its time from the first frame."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        tb = c.streams.video[0].time_base
    return (
        np.stack([f.to_ndarray(format="rgb24") for f in frames]),
        [None if f.pts is None else (f.pts - frames[0].pts) * tb for f in frames],
    )


def lavis_indices(n_frames: int, n: int) -> np.ndarray:
    n = min(n, n_frames)
    idx = np.arange(0, n_frames, n_frames / n).astype(int)
    return idx[idx < n_frames]


def changeit_indices(times: list[Fraction], fps: Fraction, duration: Fraction) -> list[int]:
    """For each t = k / fps < duration, the last frame shown at or before t."""
    out, k = [], 0
    while k / fps < duration:
        out.append(max(i for i, s in enumerate(times) if s <= k / fps))
        k += 1
    return out


@pytest.fixture
def no_fallback(monkeypatch):
    """Fail if sampling gives up on timestamps and decodes in order."""

    def refuse(path, wanted, convert):
        assert len(wanted) == decode.probe(path).num_frames, "fell back to in-order decoding"
        return real(path, wanted, convert)

    real = decode._decode_in_order
    monkeypatch.setattr(decode, "_decode_in_order", refuse)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, make_frames(100), 25, gop=12)
    return path


# Videos for the seek-versus-decode-everything check: (rate, gop, frames, extension).
SEEK_CASES = [
    (25, 12, 150, ".mp4"),
    (30, 50, 300, ".mp4"),
    (Fraction(30000, 1001), 250, 600, ".mp4"),
    (25, 30, 200, ".mkv"),
]


@pytest.fixture(
    scope="module", params=SEEK_CASES, ids=lambda c: f"{float(c[0]):.2f}fps-gop{c[1]}{c[3]}"
)
def long_clip(request, tmp_path_factory):
    rate, gop, n, ext = request.param
    path = tmp_path_factory.mktemp("seek") / f"clip{ext}"
    write_video(path, make_frames(n), rate, gop=gop)
    return path, Fraction(rate), n, *decode_everything(path)


def test_probe(clip, tmp_path):
    assert probe(clip) == VideoInfo(num_frames=100, fps=25.0, duration=4.0, width=W, height=H)
    ntsc = tmp_path / "ntsc.mp4"
    write_video(ntsc, make_frames(60), 30000 / 1001)  # a float NTSC rate comes back exact
    info = probe(ntsc)
    assert (info.num_frames, info.fps, info.duration) == (60, 30000 / 1001, 60 * 1001 / 30000)


def test_frames_carry_their_index(clip):
    frames, _ = decode_everything(clip)
    assert [read_index(f) for f in frames] == list(range(100))


@pytest.mark.parametrize("n", [1, 7, 8, 16])
def test_uniform_sampling_takes_lavis_indices(clip, n, no_fallback):
    got = sample_frames(clip, num_frames=n)
    assert got.shape == (n, H, W, 3) and got.dtype == np.uint8
    assert [read_index(f) for f in got] == lavis_indices(100, n).tolist()


def test_uniform_sampling_drops_arange_overshoot(tmp_path):
    # np.arange(0, 17, 17 / 7) has 8 elements, the last being 17: one past the end
    path = tmp_path / "v17.mp4"
    write_video(path, make_frames(17), 25)
    assert len(np.arange(0, 17, 17 / 7)) == 8
    assert [read_index(f) for f in sample_frames(path, num_frames=7)] == [0, 2, 4, 7, 9, 12, 14]


def test_more_frames_than_video_gives_every_frame_like_lavis(clip):
    assert [read_index(f) for f in sample_frames(clip, num_frames=500)] == list(range(100))


def test_fps_sampling_takes_frame_on_screen(clip, tmp_path, no_fallback):
    assert [read_index(f) for f in sample_frames(clip, fps=1)] == [0, 25, 50, 75]
    assert [read_index(f) for f in sample_frames(clip, fps=2)] == [0, 12, 25, 37, 50, 62, 75, 87]
    assert [read_index(f) for f in sample_frames(clip, fps=50)] == [i // 2 for i in range(200)]
    ntsc = tmp_path / "ntsc.mp4"
    write_video(ntsc, make_frames(120), Fraction(30000, 1001))  # 4.004 s
    assert [read_index(f) for f in sample_frames(ntsc, fps=1)] == [0, 29, 59, 89, 119]


def test_no_sampling_gives_every_frame(clip):
    assert np.array_equal(sample_frames(clip), decode_everything(clip)[0])


@pytest.mark.slow
@pytest.mark.parametrize(
    "num_frames, fps",
    [(1, None), (3, None), (8, None), (16, None), (None, 0.5), (None, 1), (None, 7)],
)
def test_seek_path_equals_decoding_everything(long_clip, num_frames, fps, no_fallback):
    path, rate, n, reference, times = long_clip
    assert len(reference) == n == probe(path).num_frames
    if fps is None:
        expected = lavis_indices(n, num_frames)
    else:
        expected = changeit_indices(times, Fraction(fps), n / rate)
    got = sample_frames(path, num_frames=num_frames, fps=fps)
    assert np.array_equal(got, reference[expected])


class CountingSeeks:
    """A container proxy that counts seeks (PyAV's container type cannot be patched)."""

    def __init__(self, container):
        self._container, self.seeks = container, 0

    def seek(self, *args, **kwargs):
        self.seeks += 1
        return self._container.seek(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._container, name)


@pytest.mark.parametrize(
    "targets, seeks",
    [
        ([0, 40, 80, 120], 4),  # keyframes every 12: one seek per target (the first rewinds)
        (list(range(0, 60, 3)), 1),  # dense: decode straight through after the opening rewind
    ],
)
def test_seeks_only_past_keyframes(tmp_path, targets, seeks):
    path = tmp_path / "gop12.mp4"
    write_video(path, make_frames(150), 25, gop=12)
    with av.open(str(path)) as container:
        scan = decode._scan(path, container)
        proxy = CountingSeeks(container)
        got = decode._decode_by_pts(
            proxy, container.streams.video[0], scan, targets, lambda f: f.to_ndarray(format="rgb24")
        )
    assert sorted(got) == targets and proxy.seeks == seeks
    assert [read_index(got[t]) for t in targets] == targets


@pytest.mark.parametrize(
    "ext, codec",
    [
        (".avi", None),  # no pts stored: FFmpeg numbers packets in decode order
        (".ts", None),  # seeks by bytes, so lands off keyframes
        (".h264", None),  # raw stream: no timestamps at all
        (".mov", None),
        (".mp4", "mpeg4"),  # the fallback encoder
        (".webm", "libvpx-vp9"),  # what YouTube serves
        (".mkv", "libx265"),  # HEVC with open GOPs: leading pictures after each keyframe
    ],
)
def test_other_containers_and_codecs_equal_decoding_everything(tmp_path, ext, codec):
    if codec and codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg build")
    path = tmp_path / f"v{ext}"
    write_video(path, make_frames(90), 25, gop=20, codec=codec)
    reference, times = decode_everything(path)
    assert probe(path).num_frames == len(reference) == 90
    assert np.array_equal(sample_frames(path, num_frames=8), reference[lavis_indices(90, 8)])
    assert np.array_equal(sample_frames(path, fps=3), reference[[i * 25 // 3 for i in range(11)]])
    assert np.array_equal(sample_frames(path), reference)


def write_raw(path: Path, frames: np.ndarray, pts: list[int]) -> None:
    """libx264 at 25 fps with the given frame pts (in 1/25 s), bypassing write_video."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for rgb, t in zip(frames, pts):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 25)
            c.mux(s.encode(f))
        c.mux(s.encode(None))


def test_edit_list_discards_are_not_frames(tmp_path, no_fallback):
    # negative pts make the mp4 muxer write an edit list starting at 0, as cutting a clip
    # without re-encoding does: the first 5 samples are decoded as references, never shown
    path = tmp_path / "cut.mp4"
    write_raw(path, make_frames(60), [i - 5 for i in range(60)])
    reference, _ = decode_everything(path)
    assert len(reference) == probe(path).num_frames == 55 and read_index(reference[0]) == 5
    assert np.array_equal(sample_frames(path, num_frames=8), reference[lavis_indices(55, 8)])


def test_variable_frame_rate_counts_frames_not_ticks(tmp_path, no_fallback):
    path = tmp_path / "vfr.mkv"
    write_raw(path, make_frames(60), [i + i // 10 for i in range(60)])  # a gap every 10 frames
    reference, times = decode_everything(path)
    assert len(reference) == probe(path).num_frames == 60  # not duration * rate = 66
    assert np.array_equal(sample_frames(path, num_frames=8), reference[lavis_indices(60, 8)])
    duration = times[-1] + Fraction(1, 25)
    expected = changeit_indices(times, Fraction(3), duration)
    assert np.array_equal(sample_frames(path, fps=3), reference[expected])


def test_size_and_crop_follow_width_height_convention(clip):
    assert sample_frames(clip, num_frames=2, size=32).shape == (2, 32, 40, 3)  # shorter side 32
    assert sample_frames(clip, num_frames=2, size=(40, 16)).shape == (2, 16, 40, 3)  # (W, H)
    resized = sample_frames(clip, num_frames=2, size=(40, 32))
    assert np.array_equal(
        sample_frames(clip, num_frames=2, size=(40, 32), crop=(20, 8)), resized[:, 12:20, 10:30]
    )  # centre crop, (W, H)
    assert sample_frames(clip, num_frames=2, crop=16).shape == (2, 16, 16, 3)
    full = sample_frames(clip, num_frames=2)
    assert np.array_equal(sample_frames(clip, num_frames=2, crop=(W, 32)), full[:, 16:48])
    with pytest.raises(ValueError, match="does not fit"):
        sample_frames(clip, num_frames=2, size=16, crop=32)


def test_bad_arguments(clip):
    with pytest.raises(ValueError, match="one of num_frames, fps and indices"):
        sample_frames(clip, num_frames=4, fps=1)
    with pytest.raises(ValueError, match="even"):
        write_video(clip.parent / "odd.mp4", np.zeros((2, 9, 8, 3), np.uint8), 25)
    with pytest.raises(ValueError, match="uint8"):
        write_video(clip.parent / "f.mp4", np.zeros((2, 8, 8, 3), np.float32), 25)


def truncate(path: Path, fraction: float) -> Path:
    out = path.with_name(f"cut-{path.name}")
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def test_missing_empty_and_non_video_files(tmp_path):
    with pytest.raises(VideoDecodeError, match="not found") as e:
        sample_frames(tmp_path / "nope.mp4", num_frames=4)
    assert isinstance(e.value, RuntimeError) and e.value.path == str(tmp_path / "nope.mp4")
    assert str(e.value) == f"{e.value.path}: not found"
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty file"):
        probe(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("definitely not a video\n" * 50)
    with pytest.raises(VideoDecodeError, match="could not decode") as e:
        sample_frames(tmp_path / "text.mp4")
    assert isinstance(e.value.__cause__, av.error.FFmpegError)
    again = pickle.loads(pickle.dumps(e.value))
    assert (again.path, again.reason) == (e.value.path, e.value.reason)


def test_truncated_mp4_raises_even_for_early_frames(clip):
    cut = truncate(clip, 0.3)  # moov is at the front, so it opens, but samples are missing
    for call in (
        lambda: probe(cut),
        lambda: sample_frames(cut, num_frames=8),
        lambda: sample_frames(cut, num_frames=1),
        lambda: sample_frames(cut),
    ):
        with pytest.raises(VideoDecodeError, match=r"truncated: got \d+ of 100 frames"):
            call()


def test_truncated_mkv_reports_frames_decoded(tmp_path):
    path = tmp_path / "v.mkv"
    write_video(path, make_frames(200), 25, gop=30)
    cut = truncate(path, 0.3)  # Matroska stores no frame count, but the header has a duration
    for call in (
        lambda: probe(cut),
        lambda: sample_frames(cut, num_frames=8),
        lambda: sample_frames(cut, fps=1),
        lambda: sample_frames(cut),
    ):
        with pytest.raises(VideoDecodeError, match=r"truncated: got \d+ of ~200 frames"):
            call()


def sine(seconds: float, freq: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(x: np.ndarray, sample_rate: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x))) * sample_rate / len(x))


def test_audio_round_trip(tmp_path):
    path = tmp_path / "av.mp4"
    write_video(path, make_frames(50), 25, audio=sine(2.0, 440, 16000), sample_rate=16000)
    for rate in (16000, 8000):
        x = read_audio(path, sample_rate=rate)
        assert x.dtype == np.float32 and x.ndim == 1
        assert abs(len(x) - 2 * rate) <= 2048 * rate // 16000  # AAC pads to whole 1024-frames
        assert abs(dominant_hz(x, rate) - 440) < 2
        assert abs(np.sqrt(np.mean(x**2)) - 0.5 / np.sqrt(2)) < 0.03
    assert sample_frames(path, num_frames=4).shape == (4, H, W, 3)


def test_audio_only_and_silent_files(tmp_path, clip):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(sine(1.0, 440, 16000)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with pytest.raises(VideoDecodeError, match="no video stream"):
        sample_frames(path, num_frames=4)
    assert abs(dominant_hz(read_audio(path), 16000) - 440) < 2
    with pytest.raises(VideoDecodeError, match="no audio stream"):
        read_audio(clip)


def test_indices_callable_picks_those_frames(tmp_path):
    """Random training samplers (LAVIS head-tail) pass the ordinals they want."""
    path = tmp_path / "idx.mp4"
    frames = np.stack([np.full((48, 64, 3), 10 * i, np.uint8) for i in range(20)])
    write_video(path, frames, fps=10)
    got = sample_frames(path, indices=lambda n: np.array([n - 1, 3, 3, 0]))
    full = sample_frames(path)
    assert np.array_equal(got, full[[19, 3, 3, 0]])
    with pytest.raises(ValueError, match="one of num_frames, fps and indices"):
        sample_frames(path, num_frames=2, indices=lambda n: np.arange(2))
    with pytest.raises(ValueError, match=r"must lie in \[0, 20\)"):
        sample_frames(path, indices=lambda n: np.array([n]))
