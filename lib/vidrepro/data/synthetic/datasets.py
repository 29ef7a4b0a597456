"""Write the synthetic world to disk in the real datasets' layouts.

``build(kind, out, seed, size)`` writes one kind; each uses the writers in
:mod:`vidrepro.data.formats`, so the notebooks read synthetic and real data with the same code:

============  ===========================================  =================================
kind          layout (under ``out``)                        stands in for
============  ===========================================  =================================
captions      ``videos/*.mp4``, ``annotations/cap_{split}``  MSR-VTT / MSVD (LAVIS files)
              ``.json``, ``annotations/{split}_gt.json``
images        ``images/*.jpg``, ``annotations/cap_train``   image-text pretraining pairs
              ``.json`` (LAVIS, ``image`` key)
text          ``corpus.txt`` (one sentence a line),          the language model's text
              ``overlap.json``                               (none of the captions' sentences)
pretrain      ``<video_id>.mp4``, ``segments.jsonl``         YT-Temporal (MERLOT)
stories       ``images/{split}/*.jpg``,                      VIST / SIND (as downloaded)
              ``sis/{split}.story-in-sequence.json``
dense         ``videos/*.mp4``, ``{train,val_1,val_2}``      ActivityNet Captions + BMT's
              ``.json``, ``{I3D_DIR}/<id>_{rgb,flow}.npy``,  I3D / VGGish features (BMT's
              ``{VGGISH_DIR}/<id>.npy``                      folder names)
states        ``categories.csv``, ``videos/<cat>.csv``,      ChangeIt
              ``annotations/<cat>/<id>.fps1.csv``,
              ``video_root/<cat>/<id>.mp4``
qa            ``videos/<id>.mp4``,                           TVQA / MSRVTT-MC (MERLOT's
              ``annotations/qa_{split}.json``                multiple-choice finetuning)
============  ===========================================  =================================

Every kind is deterministic in ``seed`` (each item draws from its own child generator, so
changing the count of one split does not change the others' content).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from ...paths import data_path, data_root
from ...video import write_video
from ..formats import activitynet, changeit, lavis, merlot, videoqa, vist
from . import audio, features, language, render, scenes, states
from .world import COLOURS, SHAPES, Event, Scene

KINDS = ("captions", "images", "text", "pretrain", "stories", "dense", "states", "qa")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Size:
    frame: int  # pixels, square
    fps: int
    clips: tuple[int, int, int]  # train, val, test (captions)
    refs: int  # references per captioning clip
    images: int
    sentences: int  # language-model corpus
    pretrain_videos: int
    segments: int  # per pretraining video
    stories: tuple[int, int, int]
    dense: tuple[int, int]  # train, val videos
    state_videos: tuple[int, int]  # per category: train, test
    state_categories: int
    qa: tuple[int, int, int]  # train, val, test videos (QA_QUESTIONS questions each)


SIZES = {
    "tiny": Size(frame=64, fps=8, clips=(160, 40, 100), refs=10, images=3000, sentences=20000,
                 pretrain_videos=1000,
                 segments=8, stories=(120, 40, 200), dense=(60, 100), state_videos=(24, 64),
                 state_categories=4, qa=(90, 20, 350)),
    "small": Size(frame=96, fps=8, clips=(1200, 100, 300), refs=20, images=20000,
                  sentences=100000,
                  pretrain_videos=800, segments=8, stories=(1000, 200, 200), dense=(400, 100),
                  state_videos=(120, 15), state_categories=6, qa=(800, 100, 200)),
}
CLIP_SECONDS = 10.0  # captioning clips: 3-4 events, so that 4 frames miss some
CLIP_EVENTS = (3, 4)
SEGMENT_SECONDS = 2.0
DENSE_FPS, DENSE_STACK = 4, 4  # one I3D-style feature row per second
I3D_DIR, VGGISH_DIR = activitynet.I3D_DIR, activitynet.VGGISH_DIR


def _rng(seed: int, *path: int) -> np.random.Generator:
    return np.random.default_rng([seed, *path])


def _write_clip(path: Path, scene: Scene, size: Size, seed: int, fps: int | None = None,
                with_audio: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Render and encode one clip; returns its frames (T, H, W, 3) and soundtrack (N,) or None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = render.render(scene, fps or size.fps, size.frame, seed)
    wave = audio.soundtrack(scene, seed=seed) if with_audio else None
    write_video(path, frames, fps or size.fps, audio=wave, sample_rate=audio.SAMPLE_RATE)
    return frames, wave


def caption_scripts(seed: int, size: Size):
    """(split, index, scene, references) of every captioning clip, from the scripts alone
    (nothing rendered): what the captions kind writes, and what the text kind keeps out."""
    for s, (split, count) in enumerate(zip(SPLITS, size.clips)):
        for i in range(count):
            rng = _rng(seed, 0, s, i)
            scene = scenes.video_clip(rng, CLIP_SECONDS, CLIP_EVENTS)
            yield split, i, scene, language.references(scene, rng, size.refs)


def build_captions(out: Path, seed: int, size: Size) -> None:
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)
    by_split: dict[str, tuple[list, dict]] = {split: ([], {}) for split in SPLITS}
    total = sum(size.clips)
    for n, (split, i, scene, refs) in enumerate(tqdm(caption_scripts(seed, size), total=total,
                                                     desc="captions", leave=False), 1):
        vid = f"video{n - 1}"
        _write_clip(out / "videos" / f"{vid}.mp4", scene, size, seed + n)
        entries, all_refs = by_split[split]
        all_refs[vid] = refs
        entries += [lavis.CaptionEntry(f"{vid}.mp4", c, vid) for c in refs]
    for split, (entries, refs) in by_split.items():
        lavis.write_captions(out / "annotations" / f"cap_{split}.json", entries)
        if split != "train":
            lavis.write_coco_gt(out / "annotations" / f"{split}_gt.json", refs)


def build_images(out: Path, seed: int, size: Size) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)
    frames, entries = {}, []
    for i in tqdm(range(size.images), desc="images", leave=False):
        rng = _rng(seed, 1, i)
        scene, t = scenes.image_scene(rng)
        frames[f"img{i}"] = render.render_still(scene, t, size.frame, seed + i)
        entries += [lavis.CaptionEntry(f"img{i}.jpg", language.image_description(scene, rng),
                                       f"img{i}") for _ in range(2)]
    vist.write_images(out / "images", frames)
    lavis.write_captions(out / "annotations" / "cap_train.json", entries, key="image")


TEXT_FILE, OVERLAP_FILE = "corpus.txt", "overlap.json"


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def build_text(out: Path, seed: int, size: Size) -> None:
    """The language model's pretraining text: the captions' grammar told of other scenes
    (1-4 events, sounds included, and photo captions), never one of the captioning clips'
    reference sentences. ``overlap.json`` says how much is shared: sentences (0, by
    construction: they are removed) and the fraction of the references' 4-grams that occur in
    the corpus (the grammar is the same, so most do)."""
    videos = {c for *_, refs in caption_scripts(seed, size) for c in refs}
    sentences, removed = [], 0
    for i in tqdm(range(size.sentences), desc="text", leave=False):
        rng = _rng(seed, 7, i)
        if rng.random() < 0.3:
            scene, _ = scenes.image_scene(rng)
            text = language.image_description(scene, rng)
        else:
            scene = scenes.caption_clip(rng, 10.0, max_events=4, sound_prob=0.15)
            text = language.describe(scene, rng)
        if text in videos:
            removed += 1
            continue
        sentences.append(text)
    corpus = set().union(*(_ngrams(t.split(), 4) for t in sentences))
    ref_grams = set().union(*(_ngrams(t.split(), 4) for t in videos))
    (out / TEXT_FILE).write_text("\n".join(sentences) + "\n")
    (out / OVERLAP_FILE).write_text(json.dumps({
        "sentences": len(sentences), "caption_sentences": len(videos),
        "caption_sentences_in_corpus": len(videos & set(sentences)),
        "removed_as_caption_sentences": removed,
        "caption_4grams_in_corpus": round(len(ref_grams & corpus) / max(len(ref_grams), 1), 4),
    }, indent=1))


def read_text(root: str | Path) -> list[str]:
    """The sentences of a text corpus folder (``corpus.txt``: one a line; blank lines skipped)."""
    path = Path(root) / TEXT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no text corpus (one sentence a line)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def build_pretrain(out: Path, seed: int, size: Size) -> None:
    videos = []
    for i in tqdm(range(size.pretrain_videos), desc="pretrain", leave=False):
        rng = _rng(seed, 2, i)
        scene, steps = scenes.scripted_clip(rng, size.segments, SEGMENT_SECONDS)
        vid = f"yt{i:05d}"
        _write_clip(merlot.video_path(out, vid), scene, size, seed + i, fps=4)
        segments = []
        for k, event in enumerate(steps):
            start, end = k * SEGMENT_SECONDS, (k + 1) * SEGMENT_SECONDS
            said = language.clause(event, scene, rng, language.subject(scene, event, rng, k > 0))
            segments.append(merlot.Segment(start, end, language.narration(said, rng, noise=0.3)))
        videos.append(merlot.MerlotVideo(vid, scene.duration, tuple(segments)))
    merlot.write_segments(out, videos)


def build_stories(out: Path, seed: int, size: Size) -> None:
    for s, (split, count) in enumerate(zip(SPLITS, size.stories)):
        stories, frames = [], {}
        for i in tqdm(range(count), desc=f"stories/{split}", leave=False):
            rng = _rng(seed, 3, s, i)
            scene, steps = scenes.scripted_clip(rng, 5, SEGMENT_SECONDS, distractor=False)
            photo_ids, texts = [], []
            for k, event in enumerate(steps):
                photo = f"{split}{i}_{k}"
                frames[photo] = render.render_still(scene, event.end, size.frame, seed + i)
                photo_ids.append(photo)
                texts.append(language.clause(event, scene, rng,
                                             language.subject(scene, event, rng, k > 0)) + ".")
            stories.append(vist.Story(f"{split}{i}", f"album_{split}{i}", tuple(photo_ids),
                                      tuple(texts)))
        vist.write_images(out / "images" / split, frames)
        (out / "sis").mkdir(exist_ok=True)
        vist.write_stories(out / "sis" / f"{split}.story-in-sequence.json", stories)


def dense_events(scene: Scene, rng: np.random.Generator, jitter: float) -> tuple:
    """ActivityNet-style events: one sentence per scripted event, timestamps jittered."""
    out = []
    for e in scene.ordered_events():
        subject = "" if e.obj is None else language.subject(scene, e, rng)
        start = float(np.clip(e.start + rng.uniform(-jitter, jitter), 0, scene.duration))
        end = float(np.clip(e.end + rng.uniform(-jitter, jitter), start + 0.1, scene.duration))
        out.append(activitynet.Event(round(start, 2), round(end, 2),
                                     language.clause(e, scene, rng, subject).strip()))
    return tuple(out)


def _dense_scene(seed: int, split_index: int, i: int) -> tuple[np.random.Generator, float, Scene]:
    rng = _rng(seed, 4, split_index, i)
    duration = float(rng.integers(20, 41))
    return rng, duration, scenes.caption_clip(rng, duration, max_events=6, sound_prob=0.25)


def dense_modalities(split: str = "val", seed: int = 0, size: str | Size = "tiny") -> dict:
    """How many events of the dense kind's ``split`` are only seen, only heard, or both (from
    the scripts, without rendering): what a single-modality captioner can know."""
    size = SIZES[size] if isinstance(size, str) else size
    s = ("train", "val").index(split)
    counts = {"seen only": 0, "heard only": 0, "seen and heard": 0}
    for i in range(size.dense[s]):
        for e in _dense_scene(seed, s, i)[2].ordered_events():
            key = ("seen and heard" if e.visible and e.audible else
                   "seen only" if e.visible else "heard only")
            counts[key] += 1
    return counts


def build_dense(out: Path, seed: int, size: Size) -> None:
    (out / "videos").mkdir(parents=True, exist_ok=True)
    annotations: dict[str, list[activitynet.AnetVideo]] = {"train": [], "val_1": [], "val_2": []}
    for s, (split, count) in enumerate(zip(("train", "val"), size.dense)):
        for i in tqdm(range(count), desc=f"dense/{split}", leave=False):
            rng, duration, scene = _dense_scene(seed, s, i)
            vid = f"v_{split}{i:04d}"
            frames, wave = _write_clip(out / "videos" / f"{vid[2:]}.mp4", scene, size, seed + i,
                                       fps=DENSE_FPS, with_audio=True)
            rgb, flow = features.video_features(frames, DENSE_STACK)
            activitynet.write_features(out / I3D_DIR, vid, "rgb", rgb)
            activitynet.write_features(out / I3D_DIR, vid, "flow", flow)
            activitynet.write_features(out / VGGISH_DIR, vid, "audio",
                                       features.audio_features(wave, audio.SAMPLE_RATE))
            sets = ("train",) if split == "train" else ("val_1", "val_2")
            for name in sets:  # val_1 and val_2: two independent annotators of the same videos
                annotations[name].append(activitynet.AnetVideo(
                    vid, duration, dense_events(scene, rng, jitter=0.3)))
    for name, videos in annotations.items():
        activitynet.write_annotations(out / f"{name}.json", videos)


def build_states(out: Path, seed: int, size: Size) -> None:
    cats = states.CATEGORIES[: size.state_categories]
    changeit.write_categories(out, [changeit.Category(c.name, c.action, 0.5) for c in cats])
    for c, cat in enumerate(cats):
        scores = {}
        for split, count in zip(("train", "test"), size.state_videos):
            for i in tqdm(range(count), desc=f"states/{cat.name}/{split}", leave=False):
                rng = _rng(seed, 5, c, split == "test", i)
                has_change = split == "test" or rng.random() > 0.3
                video = states.state_video(cat, rng, has_change=has_change)
                vid = f"{cat.name[:3]}{split}{i:03d}"
                _write_clip(changeit.video_path(out / "video_root", cat.name, vid), video.scene,
                            size, seed + i, fps=4)
                scores[vid] = round(states.relevance(has_change, rng), 4)
                if split == "test":
                    changeit.write_annotation(out, cat.name, vid, video.labels)
        changeit.write_scores(out, cat.name, scores)


QA_STEPS, QA_QUESTIONS, QA_ANSWERS = 5, 3, 4
QA_QUESTION = "what happens in the video?"
QA_ANSWER_WORDS = 11  # an answer is one text segment: START + 11 words fill the tiny text_len


@dataclass(frozen=True)
class _Video:
    """A scripted QA video (object 0 lives through ``steps``; an idle one may stand by)."""

    scene: Scene
    steps: list[Event]

    def looks(self, k: int) -> tuple:
        """What step ``k`` shows, regardless of when: two steps that look the same cannot be
        told apart by order."""
        e = self.steps[k]
        return e.kind, e.arg, language.colour_at(self.scene, e.obj, e.start)

    def absent(self, rng: np.random.Generator) -> tuple[str, str]:
        """(colour, shape) of an object the video does not show at any time."""
        colours = {o.colour for o in self.scene.objects} | {c for _, _, c in map(
            self.looks, range(len(self.steps)))} | {e.arg for e in self.steps if e.arg}
        shapes = {o.shape for o in self.scene.objects}
        return (scenes._pick(rng, [c for c in COLOURS if c not in colours]),
                scenes._pick(rng, [s for s in SHAPES if s not in shapes]))


def _pair(video: _Video, k: int, colour: str, shape: str, rng: np.random.Generator,
          reverse: bool) -> str:
    """Steps k and k + 1 (or k + 1 then k) as "the <colour> <shape> <does> then it <does>"."""
    first, second = video.steps[k + reverse], video.steps[k + 1 - reverse]
    word = scenes._pick(rng, list(language.SHAPE_WORDS[shape]))
    name = f"the {colour} {word}"
    return (f"{language.clause(first, video.scene, rng, name)} then "
            f"{language.clause(second, video.scene, rng, 'it')}")


def _options(video: _Video, k: int, rng: np.random.Generator) -> tuple[tuple[str, ...], int]:
    """MSRVTT-MC's task, with distractors that split its two skills: the video's steps k, k+1
    in order (right); reversed (only their order tells); and both orders told of an object the
    video does not show (only the frames' object tells). The words alone can reach 50% at
    most, and only by knowing which order the script makes likely. Shuffled."""
    hero = video.scene.objects[0]
    colour = language.colour_at(video.scene, 0, video.steps[k].start)
    for _ in range(50):  # synonyms short enough for one text segment (else the last draw is cut)
        other = video.absent(rng)
        options = [_pair(video, k, colour, hero.shape, rng, False),
                   _pair(video, k, colour, hero.shape, rng, True),
                   _pair(video, k, *other, rng, False), _pair(video, k, *other, rng, True)]
        if max(len(o.split()) for o in options) <= QA_ANSWER_WORDS and \
                len(set(options)) == QA_ANSWERS:
            break
    order = rng.permutation(QA_ANSWERS)
    return tuple(options[j] for j in order), int(np.flatnonzero(order == 0)[0])


def _asked(video: _Video, rng: np.random.Generator) -> list[int]:
    """Up to QA_QUESTIONS first steps k of the pairs asked about, in random order: pairs whose
    two steps look different, so the reversed option is wrong."""
    ks = [k for k in range(len(video.steps) - 1) if video.looks(k) != video.looks(k + 1)]
    return [ks[i] for i in rng.permutation(len(ks))[:QA_QUESTIONS]]


def qa_clip(rng: np.random.Generator) -> tuple[Scene, list[Event]]:
    """A QA video joins its script after the ``appear``: a video that always opened with the
    object coming into view made "what happens first?" answerable from the options' words
    alone (a model with the frames blanked scored 100% on it), so it tested no video."""
    return scenes.scripted_clip(rng, QA_STEPS, SEGMENT_SECONDS, opening=False)


def qa_items(scene: Scene, steps: list[Event], rng: np.random.Generator,
             video_id: str) -> list[videoqa.QAItem]:
    """The questions about one scripted video, each with its options shuffled."""
    video = _Video(scene, steps)
    items = []
    for q, k in enumerate(_asked(video, rng)):
        answers, answer = _options(video, k, rng)
        items.append(videoqa.QAItem(f"{video_id}_q{q}", video_id, QA_QUESTION, answers, answer))
    return items


def build_qa(out: Path, seed: int, size: Size) -> None:
    n = 0
    for s, (split, count) in enumerate(zip(SPLITS, size.qa)):
        items: list[videoqa.QAItem] = []
        for i in tqdm(range(count), desc=f"qa/{split}", leave=False):
            rng = _rng(seed, 6, s, i)
            scene, steps = qa_clip(rng)
            vid = f"{split}{i:05d}"
            n += 1
            _write_clip(videoqa.video_path(out, vid), scene, size, seed + n, fps=4)
            items += qa_items(scene, steps, rng, vid)
        videoqa.write_qa(videoqa.annotation_path(out, split), items)


BUILDERS = {"captions": build_captions, "images": build_images, "text": build_text,
            "pretrain": build_pretrain,
            "stories": build_stories, "dense": build_dense, "states": build_states,
            "qa": build_qa}


def build(kind: str, out: str | Path, seed: int = 0, size: str | Size = "tiny") -> Path:
    """Write dataset ``kind`` under ``out`` (created) and return it. ``size`` is a name in
    :data:`SIZES` or a :class:`Size` (tests use smaller ones)."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    if isinstance(size, str) and size not in SIZES:
        raise ValueError(f"unknown size {size!r}: expected one of {', '.join(SIZES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    BUILDERS[kind](out, seed, SIZES[size] if isinstance(size, str) else size)
    # Written last: a folder without it is a generation that was interrupted.
    (out / MARKER).write_text(json.dumps(_stamp(kind, seed, str(size))))
    return out


MARKER = "SYNTHETIC.json"


def generator_version() -> str:
    """Hash of the synthetic world's source (this package and the format writers): data made
    by an older generator is rebuilt, not silently reused."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for path in sorted([*here.glob("*.py"), *(here.parent / "formats").glob("*.py"),
                        here.parents[1] / "video" / "write.py"]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _stamp(kind: str, seed: int, size: str) -> dict:
    return {"kind": kind, "seed": seed, "size": size, "generator": generator_version()}


def default_location(kind: str, seed: int = 0, size: str = "tiny") -> Path:
    return data_root() / "synthetic" / f"{size}-seed{seed}" / kind


def ensure(kind: str, seed: int = 0, size: str = "tiny", out: str | Path | None = None) -> Path:
    """The dataset, generated first if it is missing or was interrupted: what notebooks call.
    A lock file beside the folder makes processes that ask at once generate it once."""
    out = Path(out) if out is not None else default_location(kind, seed, size)
    marker = out / MARKER
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(out.parent / f".{out.name}.lock"):
        if marker.exists() and json.loads(marker.read_text()) == _stamp(kind, seed, size):
            return out
        if out.exists():
            shutil.rmtree(out)
        return build(kind, out, seed, size)


def locate(kind: str, given: str = "", seed: int = 0, size: str = "tiny") -> Path:
    """A dataset folder from a params root: absolute, relative to ``$VIDREPRO_DATA``, or when
    empty the synthetic ``kind`` (generated first if missing)."""
    if not given:
        return ensure(kind, seed, size)
    return data_path(given)
