"""The synthetic world: deterministic, events really visible (or audible), every kind written
in its real format and read back by the real readers."""

import json
import threading
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from vidrepro.data.formats import activitynet, changeit, lavis, merlot, videoqa, vist
from vidrepro.data.synthetic import audio, datasets, features, language, render, scenes, states
from vidrepro.data.synthetic.world import Event, Obj, Scene, state_at
from vidrepro.video import probe, read_audio, sample_frames

SMALL = replace(
    datasets.SIZES["tiny"],
    clips=(4, 2, 2),
    refs=5,
    images=6,
    sentences=40,
    pretrain_videos=3,
    segments=4,
    stories=(3, 2, 2),
    dense=(2, 2),
    state_videos=(4, 2),
    state_categories=2,
)


def one(kind, obj=Obj("circle", "red", 0.5, 0.5, 0.1), arg=None, duration=2.0):
    return Scene(duration, "dark", (obj,), (Event(kind, 0.5, 1.5, 0, arg),))


def mask(frame, colour):
    return np.abs(frame.astype(int) - colour).sum(-1) < 60


def test_moving_object_centroid_moves():
    frames = render.render(one("move_left"), fps=4, size=64)
    xs = [np.argwhere(mask(f, (220, 40, 40)))[:, 1].mean() for f in frames]
    assert xs[0] - xs[-1] > 0.3 * 64 * 0.9  # MOVE_DISTANCE of the width, leftwards
    assert np.all(np.diff(xs) <= 0.5)


@pytest.mark.parametrize(
    "kind,check",
    [
        ("grow", lambda a, b: b > 2.2 * a),
        ("shrink", lambda a, b: b < 0.4 * a),
        ("appear", lambda a, b: a == 0 and b > 50),
        ("disappear", lambda a, b: a > 50 and b == 0),
    ],
)
def test_size_and_visibility_events_show_in_pixels(kind, check):
    frames = render.render(one(kind), fps=4, size=64)
    area = [mask(f, (220, 40, 40)).sum() for f in frames]
    assert check(area[0], area[-1]), area


def test_colour_change_and_split_show_in_pixels():
    frames = render.render(one("change_colour", arg="blue"), fps=4, size=64)
    assert mask(frames[0], (220, 40, 40)).sum() > 50 and mask(frames[-1], (220, 40, 40)).sum() == 0
    assert mask(frames[-1], (50, 90, 235)).sum() > 50
    from scipy import ndimage

    frames = render.render(one("split"), fps=4, size=64)
    assert ndimage.label(mask(frames[0], (220, 40, 40)))[1] == 1
    assert ndimage.label(mask(frames[-1], (220, 40, 40)))[1] == 2


def test_sound_is_heard_not_seen_and_moves_are_seen_not_heard():
    sound = Scene(
        4.0,
        "sand",
        (Obj("star", "green", 0.5, 0.5, 0.1),),
        (Event("sound", 1.0, 3.0, None, "bell"),),
    )
    frames = render.render(sound, fps=4, size=64)
    assert np.array_equal(frames[0], frames[-1]) and np.array_equal(frames[0], frames[8])
    feats = features.audio_features(audio.soundtrack(sound), audio.SAMPLE_RATE)  # (S, 128)
    energy = feats[:, :64].max(1)  # the loudest band: a bell is one tone
    assert energy[1:3].min() > energy[0] + 2 and energy[1:3].min() > energy[-1] + 2
    silent = one("move_right", duration=4.0)
    wave = audio.soundtrack(silent)
    assert np.abs(wave).max() < 0.1  # only the faint noise floor
    rgb, flow = features.video_features(render.render(silent, fps=4, size=64), stack=4)
    assert flow[1].sum() > 2 * flow[3].sum()  # the move (0.5-1.5 s) shows up as flow


def test_generation_is_deterministic_by_seed():
    rng = lambda s: np.random.default_rng(s)  # noqa: E731
    a, b, c = (scenes.caption_clip(rng(s)) for s in (7, 7, 8))
    assert a == b and a != c
    assert np.array_equal(render.render(a, 8, 64, 1), render.render(b, 8, 64, 1))
    assert language.references(a, rng(1), 5) == language.references(b, rng(1), 5)


def test_references_are_paraphrases_in_time_order():
    scene = Scene(
        3.0,
        "sky",
        (Obj("square", "blue", 0.5, 0.5, 0.1),),
        (Event("grow", 0.2, 1.2, 0), Event("move_left", 1.5, 2.8, 0)),
    )
    refs = language.references(scene, np.random.default_rng(0), 8)
    assert len(set(refs)) == 8
    for ref in refs:
        grew = min(ref.find(w) for w in ("grows", "bigger", "larger", "expands") if w in ref)
        moved = max(ref.find(w) for w in ("left",) if w in ref)
        assert 0 <= grew < moved, ref


def test_captions_round_trip(tmp_path):
    out = datasets.build("captions", tmp_path / "c", seed=3, size=SMALL)
    train = lavis.read_captions(out / "annotations/cap_train.json", video_root=out / "videos")
    assert len(train) == 4 * 5 and len(lavis.references(train)) == 4
    gt = lavis.read_coco_gt(out / "annotations/test_gt.json")
    assert len(gt) == 2 and all(len(v) == 5 for v in gt.values())
    video = out / "videos" / train[0].video
    assert sample_frames(video, num_frames=8).shape == (8, 64, 64, 3)
    again = datasets.build("captions", tmp_path / "c2", seed=3, size=SMALL)
    assert (again / "annotations/cap_train.json").read_text() == (
        out / "annotations/cap_train.json"
    ).read_text()


def test_captioning_clips_show_three_or_four_events_and_say_nothing_of_sound():
    counts = set()
    for seed in range(60):
        scene = scenes.video_clip(np.random.default_rng(seed), datasets.CLIP_SECONDS)
        events = scene.ordered_events()
        counts.add(len(events))
        assert all(e.visible for e in events)
        assert all(e.kind != "appear" for e in events[1:])
        assert all(e.kind not in scenes.TERMINAL for e in events[:-1])
        assert all(a.end <= b.start for a, b in zip(events, events[1:]))  # one after another
    assert counts == {3, 4}
    for *_, refs in datasets.caption_scripts(0, SMALL):
        for ref in refs:
            assert not any(w in ref for w in ("bell", "drum", "whistle", "buzzer")), ref


def test_text_corpus_holds_none_of_the_captions_sentences(tmp_path):
    size = replace(SMALL, sentences=400)
    out = datasets.build("text", tmp_path / "t", seed=1, size=size)
    corpus = datasets.read_text(out)
    captions = {c for *_, refs in datasets.caption_scripts(1, size) for c in refs}
    assert (
        len(corpus) + json.loads((out / "overlap.json").read_text())["removed_as_caption_sentences"]
        == 400
    )
    assert not captions & set(corpus)
    overlap = json.loads((out / "overlap.json").read_text())
    assert overlap["caption_sentences_in_corpus"] == 0
    assert 0.3 < overlap["caption_4grams_in_corpus"] <= 1  # same grammar, other scenes
    assert any(" then " in t for t in corpus) and any("background" in t for t in corpus)
    with pytest.raises(FileNotFoundError, match="corpus.txt"):
        datasets.read_text(tmp_path)


def test_image_captions_say_size_place_and_pieces():
    rng = np.random.default_rng(0)
    obj = Obj("circle", "red", 0.2, 0.8, 0.18)
    whole = Scene(1.0, "sky", (obj,))
    assert language.image_description(whole, rng).startswith("a big red ")
    assert language.image_description(whole, rng).endswith(
        "at the bottom left on a light blue background"
    )
    cut = Scene(1.0, "sky", (obj,), (Event("split", 0.0, 0.5, 0),))
    assert "in two pieces at the bottom left" in language.image_description(cut, rng)


def test_ensure_generates_once_when_asked_at_the_same_time(tmp_path, monkeypatch):
    monkeypatch.setitem(datasets.SIZES, "tiny", SMALL)
    built = []
    real = datasets.build
    monkeypatch.setattr(datasets, "build", lambda *a, **k: built.append(1) or real(*a, **k))
    out = tmp_path / "captions"
    threads = [
        threading.Thread(target=datasets.ensure, args=("captions",), kwargs={"out": out})
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert built == [1] and (out / datasets.MARKER).exists()


def test_images_pretrain_and_stories_round_trip(tmp_path):
    out = datasets.build("images", tmp_path / "i", size=SMALL)
    pairs = lavis.read_captions(out / "annotations/cap_train.json", out / "images", key="image")
    assert len(pairs) == 12 and "background" in pairs[0].caption
    out = datasets.build("pretrain", tmp_path / "p", size=SMALL)
    videos = merlot.read_segments(out, check_videos=True)
    assert len(videos) == 3 and all(len(v.segments) == 4 for v in videos)
    assert probe(merlot.video_path(out, videos[0].video_id)).duration == pytest.approx(8.0, abs=0.3)
    out = datasets.build("stories", tmp_path / "s", size=SMALL)
    stories = vist.read_stories(
        out / "sis/val.story-in-sequence.json", image_dir=out / "images/val"
    )
    assert len(stories) == 2 and all(len(s.texts) == 5 for s in stories)


def test_dense_round_trip_with_features_and_audio(tmp_path):
    out = datasets.build("dense", tmp_path / "d", seed=1, size=SMALL)
    train = activitynet.read_annotations(out / "train.json")
    v1, v2 = (activitynet.read_annotations(out / f"val_{k}.json") for k in (1, 2))
    assert [v.video_id for v in v1] == [v.video_id for v in v2]
    assert [e.sentence for e in v1[0].events] != [e.sentence for e in v2[0].events] or [
        e.start for e in v1[0].events
    ] != [e.start for e in v2[0].events]
    i3d, vggish = out / datasets.I3D_DIR, out / datasets.VGGISH_DIR
    kept = activitynet.with_features(train, i3d, vggish)
    assert kept.skipped.count == 0
    video = train[0]
    rgb = activitynet.load_features(i3d, video.video_id, "rgb")
    aud = activitynet.load_features(vggish, video.video_id, "audio")
    assert rgb.shape == (int(video.duration), 1024) and aud.shape[1] == 128
    wave = read_audio(out / "videos" / f"{video.video_id[2:]}.mp4")
    assert len(wave) == pytest.approx(video.duration * 16000, rel=0.02)


def test_states_round_trip_labels_align_with_decoded_frames(tmp_path):
    out = datasets.build("states", tmp_path / "st", seed=2, size=SMALL)
    cats = changeit.read_categories(out)
    assert [c.name for c in cats] == sorted(c.name for c in states.CATEGORIES[:2])
    for cat in cats:
        scores = changeit.read_scores(out, cat.name)
        assert len(scores) == 6
        for vid in changeit.annotated_ids(out, cat.name):
            labels = changeit.read_annotation(out, cat.name, vid)
            assert set(np.unique(labels)) == {0, 1, 2, 3}
            assert np.all(np.diff(np.flatnonzero(labels)) >= 0)
            frames = sample_frames(changeit.find_video(out / "video_root", cat.name, vid), fps=1)
            aligned, mismatch = changeit.align(labels, len(frames))
            assert abs(mismatch) <= 1
            # initial < action < end in time
            first = {k: np.flatnonzero(labels == k).min() for k in (1, 2, 3)}
            assert first[1] < first[2] < first[3]


def test_states_without_change_have_no_state_labels_and_lower_relevance():
    rng = np.random.default_rng(0)
    cat = states.CATEGORIES[0]
    video = states.state_video(cat, rng, has_change=False)
    assert not video.labels.any()
    hi = np.mean([states.relevance(True, rng) for _ in range(200)])
    lo = np.mean([states.relevance(False, rng) for _ in range(200)])
    assert hi > lo + 0.2


def test_ensure_regenerates_an_interrupted_generation(tmp_path, monkeypatch):
    monkeypatch.setitem(datasets.SIZES, "tiny", SMALL)
    out = datasets.ensure("images", out=tmp_path / "img")
    stamp = (out / datasets.MARKER).stat().st_mtime_ns
    assert datasets.ensure("images", out=out) == out
    assert (out / datasets.MARKER).stat().st_mtime_ns == stamp  # found, not regenerated
    (out / datasets.MARKER).unlink()  # as if killed before the end
    datasets.ensure("images", out=out)
    assert (out / datasets.MARKER).exists()


def test_ensure_rebuilds_data_made_by_another_generator(tmp_path, monkeypatch):
    """Results must come from the data a fresh clone generates: a changed generator rebuilds."""
    monkeypatch.setitem(datasets.SIZES, "tiny", SMALL)
    out = datasets.ensure("images", out=tmp_path / "img")
    stamp = (out / datasets.MARKER).stat().st_mtime_ns
    monkeypatch.setattr(datasets, "generator_version", lambda: "an older generator")
    datasets.ensure("images", out=out)
    assert (out / datasets.MARKER).stat().st_mtime_ns != stamp
    assert "an older generator" in (out / datasets.MARKER).read_text()


@pytest.mark.slow
def test_tour_shows_every_kind_through_the_readers(tmp_path, monkeypatch):
    """The data notebook's figures, on small generated datasets."""
    import matplotlib

    matplotlib.use("Agg")
    from vidrepro.kit import tour
    from vidrepro.kit.params import DataParams

    monkeypatch.setenv("VIDREPRO_DATA", str(tmp_path))
    monkeypatch.setitem(datasets.SIZES, "tiny", SMALL)
    roots = tour.dataset_roots(DataParams())
    assert roots["dense"] == tmp_path / "synthetic/tiny-seed0/dense"
    assert tour.summary(roots)["dense_videos_val_1"] == 2
    figures = [
        tour.caption_clip(roots["captions"]),
        tour.image_pairs(roots["images"]),
        tour.pretrain_video(roots["pretrain"]),
        tour.story(roots["stories"]),
        tour.dense_video(roots["dense"]),
        tour.waveform(roots["dense"]),
        tour.state_video(roots["states"]),
        tour.relevance(roots["states"]),
    ]
    assert [len(f.axes) for f in figures[:2]] == [8, 8]
    assert len(figures[4].axes) == 4  # rgb, audio, val_1, val_2
    given = tour.dataset_roots(DataParams(captions_root="msrvtt"))
    assert given["captions"] == tmp_path / "msrvtt"


# --- multiple-choice video QA (the qa kind) --------------------------------------------------


def told(text, scene, steps):
    """(colour, shape word, steps in the order told) of a "the C S <does> then it <does>"
    answer: the steps whose phrase the two clauses use."""
    first, second = text.split(" then it ")
    words = first.split()
    colour, rest = words[1], " ".join(words[2:])
    shape = next(
        w
        for ws in language.SHAPE_WORDS.values()
        for w in sorted(ws, key=len)[::-1]
        if rest.startswith(w + " ")
    )

    def step(clause):
        return {
            k
            for k, e in enumerate(steps)
            if any(clause.endswith(p.format(colour=e.arg)) for p in language.EVENT_PHRASES[e.kind])
        }

    return colour, shape, step(first), step(second)


def test_qa_round_trip_right_answer_is_two_steps_of_the_video_in_order(tmp_path):
    size = replace(datasets.SIZES["tiny"], qa=(3, 1, 2))
    out = datasets.build("qa", tmp_path / "qa", seed=4, size=size)
    for s, (split, count) in enumerate(zip(datasets.SPLITS, size.qa)):
        items = videoqa.read_qa(videoqa.annotation_path(out, split), video_root=out / "videos")
        assert len(videoqa.by_video(items)) == count
        for item in items:
            i = int(item.video_id.removeprefix(split))
            scene, steps = datasets.qa_clip(datasets._rng(4, 6, s, i))
            hero = scene.objects[0]
            assert item.question == datasets.QA_QUESTION
            assert len(item.answers) == datasets.QA_ANSWERS == len(set(item.answers))
            shown = [told(a, scene, steps) for a in item.answers]
            colour, shape, first, second = shown[item.answer]
            assert shape in language.SHAPE_WORDS[hero.shape]
            assert any(k + 1 in second for k in first)  # two consecutive steps, in order
            k = next(k for k in first if k + 1 in second)
            assert colour == language.colour_at(scene, 0, steps[k].start)
            for j, (c, w, f, t) in enumerate(shown):
                if j == item.answer:
                    continue
                same_object = w in language.SHAPE_WORDS[hero.shape] and c == colour
                absent = all(w not in language.SHAPE_WORDS[o.shape] for o in scene.objects)
                assert same_object or absent  # a distractor is the video's object or none of its
                assert not (same_object and k in f and k + 1 in t)  # ...never the right order
    video = videoqa.video_path(out, "train00000")
    assert probe(video).duration == pytest.approx(10.0, abs=0.3)


def test_qa_is_deterministic_per_video(tmp_path):
    a = datasets.build("qa", tmp_path / "a", seed=1, size=replace(SMALL, qa=(2, 1, 0)))
    b = datasets.build("qa", tmp_path / "b", seed=1, size=replace(SMALL, qa=(1, 1, 0)))
    train_a = videoqa.read_qa(videoqa.annotation_path(a, "train"))
    train_b = videoqa.read_qa(videoqa.annotation_path(b, "train"))
    assert list(train_b) == [q for q in train_a if q.video_id == "train00000"]
    assert (
        videoqa.annotation_path(a, "val").read_text()
        == videoqa.annotation_path(b, "val").read_text()
    )
    assert datasets.locate("qa", str(a)) == a


def test_qa_options_unique_fit_one_segment_and_answer_position_uniform():
    """Without rendering: 400 videos' questions, the right option's position near 1/4 each,
    each option short enough for one text segment."""
    positions = Counter()
    for i in range(400):
        rng = datasets._rng(0, 6, 0, i)
        scene, steps = datasets.qa_clip(rng)
        for item in datasets.qa_items(scene, steps, rng, f"v{i}"):
            assert len(set(item.answers)) == datasets.QA_ANSWERS
            assert max(len(a.split()) for a in item.answers) <= datasets.QA_ANSWER_WORDS
            positions[item.answer] += 1
    total = sum(positions.values())
    assert 0.95 * 400 * datasets.QA_QUESTIONS <= total <= 400 * datasets.QA_QUESTIONS  # "up to"
    assert all(0.2 < positions[k] / total < 0.3 for k in range(datasets.QA_ANSWERS)), positions


def test_qa_videos_start_mid_story_so_no_answer_is_readable_off_its_words():
    """Every scripted video opened with the object coming into view, so "what happens first?"
    was the one option saying so; QA videos join the script after it, the object in view."""
    firsts = Counter()
    for i in range(200):
        scene, steps = datasets.qa_clip(datasets._rng(0, 6, 0, i))
        assert len(steps) == datasets.QA_STEPS
        assert all(e.kind != "appear" for e in scene.events)
        assert state_at(scene, 0.0)[0].alpha == 1.0  # in view at the first frame
        firsts[steps[0].kind] += 1
    assert len(firsts) >= 4 and max(firsts.values()) < 0.5 * 200, firsts
    scene, steps = scenes.scripted_clip(datasets._rng(0, 2, 0), 5, 2.0)  # pretraining: unchanged
    assert steps[0].kind == "appear"


# --- the I3D-style RGB rows of the dense kind see shapes -------------------------------------


def _shape_probe_accuracy(extract, n_train=180, n_test=60):
    """Held-out accuracy of a ridge probe (dual form) naming the shape from one RGB row of a
    still single-object clip: shapes in turn, colour, size, place and background at random."""
    from vidrepro.data.synthetic.world import BACKGROUNDS, SHAPES

    rng = np.random.default_rng(0)
    rows, shapes = [], []
    for i in range(n_train + n_test):
        obj = replace(
            scenes.random_object(rng, SHAPES[i % 4]),
            x=float(rng.uniform(0.2, 0.8)),
            y=float(rng.uniform(0.2, 0.8)),
        )
        scene = Scene(1.0, list(BACKGROUNDS)[rng.integers(4)], (obj,))
        rows.append(extract(render.render_still(scene, 0.0, 64, seed=i)[None], 1)[0][0])
        shapes.append(i % 4)
    x, y = np.stack(rows).astype(np.float64), np.eye(4)[shapes]
    x = (x - x[:n_train].mean(0)) / (x[:n_train].std(0) + 1e-6)
    train, test = x[:n_train], x[n_train:]
    alpha = np.linalg.solve(train @ train.T + 10.0 * np.eye(n_train), y[:n_train])
    return ((test @ train.T @ alpha).argmax(1) == y[n_train:].argmax(1)).mean()


def test_dense_rgb_features_name_the_shape_wherever_it_stands():
    """A pooled colour grid alone reads colour but hardly shape (about chance, 0.25, here);
    the orientation histograms make the shape linearly readable at any position."""
    assert _shape_probe_accuracy(features.video_features) > 0.8


def test_dense_modalities_count_every_event_once_by_what_shows_it():
    counts = datasets.dense_modalities("val", seed=0, size=SMALL)
    events = 0
    for i in range(SMALL.dense[1]):
        events += len(datasets._dense_scene(0, 1, i)[2].ordered_events())
    assert sum(counts.values()) == events
    assert counts["seen only"] and counts["heard only"] and counts["seen and heard"]
