"""Dataset format readers and writers: round trips, and the malformed files real data has."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
from PIL import Image

from vidrepro.data.formats import (
    FormatError,
    Records,
    changeit,
    lavis,
    merlot,
    vatex,
    videoqa,
    vist,
)
from vidrepro.data.formats import activitynet as anet
from vidrepro.data.formats.errors import load_json


def write_text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# --- errors ----------------------------------------------------------------------------------


def test_format_error_names_file_entry_and_reason_and_pickles(tmp_path):
    err = FormatError(tmp_path / "a.json", "entry 3", "missing key 'caption'")
    assert str(err) == f"{tmp_path / 'a.json'}: entry 3: missing key 'caption'"
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.entry, again.reason) == (err.path, err.entry, err.reason)


def test_bad_json_names_file_and_line(tmp_path):
    path = write_text(tmp_path / "cap.json", '[\n{"video": "a.mp4",\n')
    with pytest.raises(FormatError, match=r"cap\.json: line \d+ column \d+: invalid JSON"):
        load_json(path)
    with pytest.raises(FormatError, match="not found"):
        load_json(tmp_path / "missing.json")


def test_records_rejects_unknown_policy():
    with pytest.raises(ValueError, match="on_error"):
        Records("ignore")


# --- LAVIS (MSR-VTT / MSVD) ------------------------------------------------------------------


def caption_entries():
    return [
        lavis.CaptionEntry("video7010.mp4", "a man is singing", "video7010"),
        lavis.CaptionEntry("video7011.mp4", "a cat plays", "video7011"),
        lavis.CaptionEntry("video7010.mp4", "someone sings on stage", "video7010"),
    ]


def test_lavis_captions_round_trip_with_video_check(tmp_path):
    for name in ("video7010.mp4", "video7011.mp4"):
        touch(tmp_path / "videos" / name)
    lavis.write_captions(tmp_path / "cap_val.json", caption_entries())
    read = lavis.read_captions(tmp_path / "cap_val.json", video_root=tmp_path / "videos")
    assert list(read) == caption_entries()
    assert read.skipped.count == 0
    assert lavis.references(read) == {
        "video7010": ["a man is singing", "someone sings on stage"],
        "video7011": ["a cat plays"],
    }


def test_lavis_tolerates_extra_keys(tmp_path):
    raw = [{"video": "video0.mp4", "caption": "a car", "image_id": "video0", "instance_id": "0"}]
    write_text(tmp_path / "cap_train.json", json.dumps(raw))
    assert list(lavis.read_captions(tmp_path / "cap_train.json")) == [
        lavis.CaptionEntry("video0.mp4", "a car", "video0")
    ]


def test_lavis_missing_key_names_file_and_entry(tmp_path):
    raw = [
        {"video": "video0.mp4", "caption": "a", "image_id": "video0"},
        {"video": "video1.mp4", "image_id": "video1"},
    ]
    path = write_text(tmp_path / "cap_train.json", json.dumps(raw))
    with pytest.raises(FormatError) as info:
        lavis.read_captions(path)
    assert str(path) in str(info.value)
    assert "entry 1 (image_id 'video1')" in str(info.value)
    assert "'caption'" in str(info.value)


def test_lavis_bad_json_names_file(tmp_path):
    path = write_text(tmp_path / "cap_test.json", "[{]")
    with pytest.raises(FormatError, match="cap_test.json"):
        lavis.read_captions(path)


def test_lavis_missing_video_raise_or_skip(tmp_path):
    touch(tmp_path / "videos" / "video7011.mp4")
    path = tmp_path / "cap_val.json"
    lavis.write_captions(path, caption_entries())
    with pytest.raises(FormatError) as info:
        lavis.read_captions(path, video_root=tmp_path / "videos")
    message = str(info.value)
    assert str(path) in message and "video7010.mp4 not found" in message
    kept = lavis.read_captions(path, video_root=tmp_path / "videos", on_error="skip")
    assert [e.image_id for e in kept] == ["video7011"]
    assert kept.skipped.count == 2  # both captions of the missing video
    assert [entry for entry, _ in kept.skipped.entries] == [
        "entry 0 (image_id 'video7010')",
        "entry 2 (image_id 'video7010')",
    ]


def test_coco_gt_round_trip_keeps_order(tmp_path):
    refs = {"video7011": ["b", "a"], "video7010": ["c"]}
    lavis.write_coco_gt(tmp_path / "gt.json", refs)
    data = json.loads((tmp_path / "gt.json").read_text())
    assert [a["id"] for a in data["annotations"]] == [0, 1, 2]
    assert data["images"] == [{"id": "video7011"}, {"id": "video7010"}]
    read = lavis.read_coco_gt(tmp_path / "gt.json")
    assert read == refs and list(read) == ["video7011", "video7010"]


def test_coco_gt_annotation_of_unlisted_image_is_an_error(tmp_path):
    gt = {
        "annotations": [{"image_id": "video1", "caption": "x", "id": 0}],
        "images": [{"id": "video0"}],
    }
    path = write_text(tmp_path / "gt.json", json.dumps(gt))
    with pytest.raises(FormatError, match=r"gt\.json: annotations\[0\] \(image_id 'video1'\)"):
        lavis.read_coco_gt(path)


# --- VATEX -----------------------------------------------------------------------------------


def test_vatex_round_trip_and_clip_ids(tmp_path):
    clips = [
        vatex.VatexClip(vatex.clip_id("Ptf_2VRj-V0", 122, 132), ("en a", "en b"), ("zh a",)),
        vatex.VatexClip("abc_DEF-123_000001_000011", ("only english",)),
        vatex.VatexClip("private_test_000000_000010"),
    ]
    vatex.write_vatex(tmp_path / "vatex.json", clips)
    raw = json.loads((tmp_path / "vatex.json").read_text())
    assert raw[0]["videoID"] == "Ptf_2VRj-V0_000122_000132"
    assert raw[2] == {"videoID": "private_test_000000_000010"}
    read = vatex.read_vatex(tmp_path / "vatex.json")
    assert list(read) == clips
    assert (read[0].youtube_id, read[0].start, read[0].end) == ("Ptf_2VRj-V0", 122, 132)
    assert (read[1].youtube_id, read[1].start, read[1].end) == ("abc_DEF-123", 1, 11)


def test_vatex_bad_video_id_names_file_and_entry(tmp_path):
    raw = [{"videoID": "noseconds", "enCap": ["x"]}]
    path = write_text(tmp_path / "vatex.json", json.dumps(raw))
    with pytest.raises(FormatError, match=r"vatex\.json: entry 0 \(videoID 'noseconds'\)"):
        vatex.read_vatex(path)
    raw = [{"videoID": "a_000001_000002", "enCap": "x"}]
    path = write_text(tmp_path / "vatex2.json", json.dumps(raw))
    with pytest.raises(FormatError, match="'enCap' must be list"):
        vatex.read_vatex(path)


def test_vatex_missing_video_raise_or_skip(tmp_path):
    clips = [
        vatex.VatexClip("aaa_000000_000010", ("x",)),
        vatex.VatexClip("bbb_000005_000015", ("y",)),
    ]
    vatex.write_vatex(tmp_path / "vatex.json", clips)
    touch(tmp_path / "clips" / "bbb_000005_000015.mp4")
    with pytest.raises(FormatError, match="aaa_000000_000010.mp4 not found"):
        vatex.read_vatex(tmp_path / "vatex.json", video_root=tmp_path / "clips")
    kept = vatex.read_vatex(tmp_path / "vatex.json", video_root=tmp_path / "clips", on_error="skip")
    assert [c.video_id for c in kept] == ["bbb_000005_000015"] and kept.skipped.count == 1


# --- VIST ------------------------------------------------------------------------------------


def stories():
    return [
        vist.Story("45530", "7200", ("11", "12", "13", "14", "15"), ("a", "b", "c", "d", "e")),
        vist.Story("45531", "7200", ("15", "14", "16", "17", "18"), ("f", "g", "h", "i", "j")),
    ]


def test_vist_round_trip_with_images(tmp_path):
    rng = np.random.default_rng(0)
    photo_ids = {p for s in stories() for p in s.photo_ids}
    frames = {p: np.full((16, 24, 3), 10 * int(p), np.uint8) for p in photo_ids}
    frames["11"] = rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)
    vist.write_stories(tmp_path / "val.story-in-sequence.json", stories())
    vist.write_images(tmp_path / "images", frames)
    read = vist.read_stories(tmp_path / "val.story-in-sequence.json", image_dir=tmp_path / "images")
    assert list(read) == stories()
    back = np.asarray(Image.open(vist.find_image(tmp_path / "images", "12")))
    assert back.shape == (16, 24, 3) and np.abs(back.astype(int) - 120).max() <= 2  # JPEG is lossy
    raw = json.loads((tmp_path / "val.story-in-sequence.json").read_text())
    assert set(raw) >= {"images", "albums", "annotations"}
    assert raw["annotations"][0][0]["tier"] == "story-in-sequence"


def test_vist_orders_storylets_by_worker_order(tmp_path):
    parts = [
        [
            {
                "storylet_id": str(10 + k),
                "story_id": "9",
                "photo_flickr_id": str(100 + k),
                "album_id": "1",
                "text": f"t{k}",
                "original_text": f"T{k}",
                "worker_arranged_photo_order": k,
                "tier": "story-in-sequence",
            }
        ]
        for k in (3, 0, 4, 1, 2)
    ]
    raw = {"images": [], "albums": [], "annotations": parts}
    path = write_text(tmp_path / "sis.json", json.dumps(raw))
    (story,) = vist.read_stories(path)
    assert story.photo_ids == ("100", "101", "102", "103", "104")
    assert story.texts == ("t0", "t1", "t2", "t3", "t4")


def test_vist_story_with_four_parts_is_rejected(tmp_path):
    vist.write_stories(tmp_path / "sis.json", stories())
    data = json.loads((tmp_path / "sis.json").read_text())
    del data["annotations"][2]  # third storylet of story 45530
    path = write_text(tmp_path / "sis.json", json.dumps(data))
    with pytest.raises(FormatError, match=r"sis\.json: story '45530': has 4 storylets, expected 5"):
        vist.read_stories(path)
    kept = vist.read_stories(path, on_error="skip")
    assert [s.story_id for s in kept] == ["45531"] and kept.skipped.count == 1


def test_vist_missing_image_raise_or_skip(tmp_path):
    vist.write_stories(tmp_path / "sis.json", stories())
    first = stories()[0].photo_ids
    vist.write_images(tmp_path / "images", {p: np.zeros((8, 8, 3), np.uint8) for p in first})
    with pytest.raises(FormatError, match=r"story '45531'.*16"):
        vist.read_stories(tmp_path / "sis.json", image_dir=tmp_path / "images")
    kept = vist.read_stories(tmp_path / "sis.json", image_dir=tmp_path / "images", on_error="skip")
    assert [s.story_id for s in kept] == ["45530"] and kept.skipped.count == 1
    png = tmp_path / "images" / "16.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    assert vist.find_image(tmp_path / "images", "16") == png


def test_vist_storylet_without_story_id_breaks_the_file(tmp_path):
    vist.write_stories(tmp_path / "sis.json", stories())
    data = json.loads((tmp_path / "sis.json").read_text())
    del data["annotations"][7][0]["story_id"]
    path = write_text(tmp_path / "sis.json", json.dumps(data))
    with pytest.raises(FormatError, match=r"annotations\[7\]: missing key 'story_id'"):
        vist.read_stories(path, on_error="skip")


# --- ActivityNet Captions + BMT features -----------------------------------------------------


def anet_videos():
    return [
        anet.AnetVideo(
            "v_QOlSCBRmfWY",
            82.73,
            (
                anet.Event(0.83, 19.86, "A young woman is seen standing in a room."),
                anet.Event(17.37, 60.81, "She dances around the room."),
            ),
        ),
        anet.AnetVideo("v_ehGHCYKzyZ8", 61.72, (anet.Event(0.0, 61.72, "A man plays the drums."),)),
    ]


def test_activitynet_round_trip(tmp_path):
    anet.write_annotations(tmp_path / "val_1.json", anet_videos())
    read = anet.read_annotations(tmp_path / "val_1.json")
    assert list(read) == anet_videos()
    raw = json.loads((tmp_path / "val_1.json").read_text())
    assert set(raw["v_ehGHCYKzyZ8"]) == {"duration", "timestamps", "sentences"}


def write_anet(tmp_path, video_id="v_a", duration=100.0, timestamps=((0.0, 10.0),), sentences=None):
    sentences = [f"s{i}" for i in range(len(timestamps))] if sentences is None else sentences
    stamps = [list(t) for t in timestamps]
    raw = {video_id: {"duration": duration, "timestamps": stamps, "sentences": sentences}}
    return write_text(tmp_path / "train.json", json.dumps(raw))


def test_activitynet_small_overshoot_is_clipped(tmp_path):
    path = write_anet(tmp_path, duration=82.73, timestamps=[(-0.2, 10.0), (70.0, 83.2)])
    (video,) = anet.read_annotations(path)
    assert [(e.start, e.end) for e in video.events] == [(0.0, 10.0), (70.0, 82.73)]


@pytest.mark.parametrize(
    "timestamps, sentences, message",
    [
        ([(10.0, 5.0)], None, "event 0: starts after it ends"),
        ([(0.0, 5.0), (50.0, 103.0)], None, "event 1: .* outside \\[0, 100.0\\]"),
        ([(100.5, 100.8)], None, "event 0: starts at 100.5 s, after the video ends"),
        ([(0.0, 5.0)], ["a", "b"], "1 timestamps but 2 sentences"),
        ([(0.0, float("nan"))], None, "event 0: timestamp must be \\[start, end\\] finite numbers"),
        ([(0.0,)], None, "event 0: timestamp must be"),
    ],
)
def test_activitynet_malformed_events(tmp_path, timestamps, sentences, message):
    path = write_anet(tmp_path, timestamps=timestamps, sentences=sentences)
    with pytest.raises(FormatError, match=f"train\\.json: video 'v_a'.*{message}"):
        anet.read_annotations(path)


def test_activitynet_missing_key_and_skip(tmp_path):
    raw = {
        "v_a": {"timestamps": [], "sentences": []},
        "v_b": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": ["x"]},
    }
    path = write_text(tmp_path / "val_2.json", json.dumps(raw))
    with pytest.raises(FormatError, match=r"val_2\.json: video 'v_a': missing key 'duration'"):
        anet.read_annotations(path)
    kept = anet.read_annotations(path, on_error="skip")
    assert [v.video_id for v in kept] == ["v_b"] and kept.skipped.count == 1
    assert "v_a" in str(kept.skipped)


@pytest.mark.parametrize(
    "start, end, rows",
    [
        (0.0, 100.0, (0, 10)),
        (95.0, 100.0, (9, 10)),
        (50.0, 50.1, (5, 6)),  # int(5.01) == 5: one row added
        (99.9, 100.0, (9, 10)),
        (100.0, 100.0, (9, 10)),  # at the very end: [S-1, S), not the empty [S, S+1)
        (0.0, 0.0, (0, 1)),
        (31.0, 68.0, (3, 6)),
        (95.0, 120.0, (9, 10)),  # an end past the duration is clamped to the last row
    ],
)
def test_feature_rows_hand_computed(start, end, rows):
    assert anet.feature_rows(10, start, end, 100.0) == rows


def test_feature_rows_uses_bmts_float_order():
    # BMT computes int(S * (start / duration)): 3 * (0.6 / 1.8) = 1.0000000000000002 -> 1,
    # where 3 * 0.6 / 1.8 = 0.9999999999999999 -> 0.
    assert anet.feature_rows(3, 0.6, 1.8, 1.8) == (1, 3)


def test_feature_rows_rejects_impossible_segments():
    with pytest.raises(ValueError):
        anet.feature_rows(10, 60.0, 50.0, 100.0)
    with pytest.raises(ValueError):
        anet.feature_rows(10, 101.0, 102.0, 100.0)
    with pytest.raises(ValueError):
        anet.feature_rows(0, 1.0, 2.0, 100.0)


def write_bmt_features(tmp_path, video_id="v_a", s_video=10, s_audio=20):
    # (S, 1024) with row i filled with i, so a slice shows which rows it took
    rgb = np.repeat(np.arange(s_video, dtype=np.float32)[:, None], 1024, axis=1)
    anet.write_features(tmp_path / "i3d", video_id, "rgb", rgb)
    anet.write_features(tmp_path / "i3d", video_id, "flow", -rgb)
    audio = np.arange(s_audio, dtype=np.float64)[:, None] * np.ones((1, 128))
    anet.write_features(tmp_path / "vggish", video_id, "audio", audio)
    return rgb


def test_features_round_trip_with_bmt_names(tmp_path):
    rgb = write_bmt_features(tmp_path, "v_QOlSCBRmfWY")
    assert (tmp_path / "i3d" / "v_QOlSCBRmfWY_rgb.npy").is_file()
    assert (tmp_path / "i3d" / "v_QOlSCBRmfWY_flow.npy").is_file()
    assert (tmp_path / "vggish" / "v_QOlSCBRmfWY.npy").is_file()
    loaded = anet.load_features(tmp_path / "i3d", "v_QOlSCBRmfWY", "rgb")
    assert loaded.dtype == np.float32 and np.array_equal(loaded, rgb)
    audio = anet.load_features(tmp_path / "vggish", "v_QOlSCBRmfWY", "audio")
    assert audio.dtype == np.float32 and audio.shape == (20, 128)


def test_event_features_slice_each_stream_by_its_own_length(tmp_path):
    write_bmt_features(tmp_path)
    out = anet.event_features(tmp_path / "i3d", tmp_path / "vggish", "v_a", 50.0, 50.1, 100.0)
    assert out["rgb"].shape == (1, 1024) and out["rgb"][0, 0] == 5
    assert out["flow"][0, 0] == -5
    # audio: int(20 * 0.5) == int(20 * 0.501) == 10, so the one row [10, 11)
    assert out["audio"].shape == (1, 128) and out["audio"][0, 0] == 10


def test_missing_feature_file_is_named(tmp_path):
    write_bmt_features(tmp_path)
    (tmp_path / "i3d" / "v_a_flow.npy").unlink()
    with pytest.raises(FormatError) as info:
        anet.event_features(tmp_path / "i3d", tmp_path / "vggish", "v_a", 0.0, 10.0, 100.0)
    assert str(tmp_path / "i3d" / "v_a_flow.npy") in str(info.value)
    assert "video 'v_a'" in str(info.value)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((10, 512), np.float32),
        np.zeros(1024, np.float32),
        np.zeros((0, 1024), np.float32),
        np.zeros((10, 1024), np.int64),
    ],
)
def test_wrong_feature_shape_or_dtype_is_an_error(tmp_path, array):
    (tmp_path / "i3d").mkdir()
    np.save(tmp_path / "i3d" / "v_a_rgb.npy", array)
    with pytest.raises(FormatError, match=r"v_a_rgb\.npy: video 'v_a': rgb features must be"):
        anet.load_features(tmp_path / "i3d", "v_a", "rgb")
    with pytest.raises(ValueError):
        anet.write_features(tmp_path / "other", "v_a", "rgb", array)


def test_rgb_and_flow_of_different_lengths_are_an_error(tmp_path):
    write_bmt_features(tmp_path)
    anet.write_features(tmp_path / "i3d", "v_a", "flow", np.zeros((11, 1024), np.float32))
    with pytest.raises(FormatError, match="flow shape"):
        anet.event_features(tmp_path / "i3d", tmp_path / "vggish", "v_a", 0.0, 10.0, 100.0)


def test_with_features_counts_videos_without_features(tmp_path):
    videos = [anet.AnetVideo("v_a", 100.0, ()), anet.AnetVideo("v_b", 100.0, ())]
    write_bmt_features(tmp_path, "v_a")
    write_bmt_features(tmp_path, "v_b")
    (tmp_path / "vggish" / "v_b.npy").unlink()
    kept = anet.with_features(videos, tmp_path / "i3d", tmp_path / "vggish")
    assert [v.video_id for v in kept] == ["v_a"] and kept.skipped.count == 1
    assert "v_b.npy" in kept.skipped.entries[0][1]
    with pytest.raises(FormatError, match="v_b"):
        anet.with_features(videos, tmp_path / "i3d", tmp_path / "vggish", on_error="raise")


# --- ChangeIt --------------------------------------------------------------------------------

REAL_CATEGORIES = """DIR_NAME,ACTION_NAME,CENTERING_PARAM
bacon,"Bacon Frying",0.371
apple,"Apple Peeling/Cutting",0.309
cube,"Rubik's Cube Solving",0.542
"""


def test_changeit_reads_the_real_categories_layout(tmp_path):
    write_text(tmp_path / "categories.csv", REAL_CATEGORIES)
    cats = changeit.read_categories(tmp_path)
    assert [c.name for c in cats] == ["apple", "bacon", "cube"]
    assert cats[0] == changeit.Category("apple", "Apple Peeling/Cutting", 0.309)
    assert changeit.category_index(cats) == {"apple": 0, "bacon": 1, "cube": 2}


def test_changeit_categories_round_trip_in_the_original_style(tmp_path):
    cats = [
        changeit.Category("apple", "Apple Peeling/Cutting", 0.309),
        changeit.Category("box", 'Gift, "Box" Wrapping', 0.346),
    ]
    changeit.write_categories(tmp_path, cats)
    text = (tmp_path / "categories.csv").read_text()
    assert text.splitlines()[:2] == [
        "DIR_NAME,ACTION_NAME,CENTERING_PARAM",
        'apple,"Apple Peeling/Cutting",0.309',
    ]
    assert changeit.read_categories(tmp_path) == cats


def test_changeit_wrong_header_is_an_error(tmp_path):
    write_text(tmp_path / "categories.csv", "NAME,ACTION,THETA\napple,x,0.3\n")
    with pytest.raises(FormatError, match=r"categories\.csv: line 1: header must be"):
        changeit.read_categories(tmp_path)


def test_changeit_scores_with_and_without_header(tmp_path):
    scores = {"DdSoQsEKXkk": 0.554, "-7h4LMH0D1k": 0.461, "_nAa2QsCzRs": 0.1}
    changeit.write_scores(tmp_path, "apple", scores)
    text = (tmp_path / "videos" / "apple.csv").read_text()
    assert text.splitlines()[0] == "DdSoQsEKXkk,0.554"  # no header, as in the dataset
    assert changeit.read_scores(tmp_path, "apple") == scores
    write_text(tmp_path / "videos" / "bacon.csv", "id,score\nabc,0.5\n")
    assert changeit.read_scores(tmp_path, "bacon") == {"abc": 0.5}
    write_text(tmp_path / "videos" / "cube.csv", "abc,0.5\ndef,high\n")
    with pytest.raises(FormatError, match=r"cube\.csv: line 2: score must be a finite number"):
        changeit.read_scores(tmp_path, "cube")


def test_noise_weight_is_a_stable_sigmoid():
    assert changeit.noise_weight(0.3, 0.3) == pytest.approx(0.5)
    assert changeit.noise_weight(0.301, 0.3) == pytest.approx(1 / (1 + np.exp(-1)))
    assert changeit.noise_weight(0.299, 0.3) == pytest.approx(1 / (1 + np.exp(1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = changeit.noise_weight(np.array([0.0, 0.3, 1.0]), np.array([1.0, 0.3, 0.0]))
    assert w.shape == (3,) and w[0] == 0.0 and w[1] == 0.5 and w[2] == 1.0
    tail = np.exp(-10) / (1 + np.exp(-10))
    assert changeit.noise_weight(0.29, 0.3) == pytest.approx(tail, rel=1e-12)


def test_changeit_annotation_round_trip_real_layout(tmp_path):
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 3, 0])
    changeit.write_annotation(tmp_path, "apple", "2gQYivaDXW0", labels)
    path = tmp_path / "annotations" / "apple" / "2gQYivaDXW0.fps1.csv"
    assert path.read_text().splitlines()[:3] == ["0,0", "1,0", "2,1"]
    back = changeit.read_annotation(tmp_path, "apple", "2gQYivaDXW0")
    assert back.dtype == np.int64 and np.array_equal(back, labels)
    assert changeit.annotated_ids(tmp_path, "apple") == ["2gQYivaDXW0"]


@pytest.mark.parametrize(
    "text, line", [("0,0\n1,5\n", 2), ("0,0\n2,1\n", 2), ("0,0\n1\n", 2), ("x,0\n", 1)]
)
def test_changeit_bad_annotation_names_file_and_line(tmp_path, text, line):
    write_text(tmp_path / "annotations" / "apple" / "vid.fps1.csv", text)
    with pytest.raises(FormatError, match=rf"vid\.fps1\.csv: line {line}: "):
        changeit.read_annotation(tmp_path, "apple", "vid")


def test_align_tolerates_and_reports_small_mismatch():
    labels = np.array([0, 1, 2, 3, 0])
    padded, mismatch = changeit.align(labels, 7)
    assert mismatch == 2 and np.array_equal(padded, [0, 1, 2, 3, 0, 0, 0])
    trimmed, mismatch = changeit.align(labels, 4)
    assert mismatch == -1 and np.array_equal(trimmed, [0, 1, 2, 3])
    same, mismatch = changeit.align(labels, 5)
    assert mismatch == 0 and np.array_equal(same, labels)


def test_align_rejects_mismatch_beyond_tolerance():
    message = r"apple/vid\.fps1\.csv: frame count: .*10 frames.*5 seconds"
    with pytest.raises(FormatError, match=message):
        changeit.align(np.zeros(5, np.int64), 10, source="apple/vid.fps1.csv")
    with pytest.raises(FormatError):
        changeit.align(np.zeros(10, np.int64), 5)


def test_changeit_find_videos_mp4_webm_missing(tmp_path):
    mp4 = touch(tmp_path / "videos" / "apple" / "a.mp4")
    webm = touch(tmp_path / "videos" / "apple" / "b.webm")
    assert changeit.find_video(tmp_path / "videos", "apple", "b") == webm
    message = r"apple/c\.\{mp4,webm\}: video apple/c: video file not found"
    with pytest.raises(FormatError, match=message):
        changeit.find_video(tmp_path / "videos", "apple", "c")
    kept = changeit.find_videos(tmp_path / "videos", "apple", ["a", "c", "b"], on_error="skip")
    assert list(kept) == [mp4, webm] and kept.skipped.count == 1
    with pytest.raises(FormatError):
        changeit.find_videos(tmp_path / "videos", "apple", ["a", "c"])


# --- MERLOT pretraining ----------------------------------------------------------------------


def merlot_videos():
    return [
        merlot.MerlotVideo(
            "vid_a", 12.0, (merlot.Segment(0.0, 4.0, "so today"), merlot.Segment(4.0, 9.5, "we"))
        ),
        merlot.MerlotVideo("vid_b", 3.0, (merlot.Segment(0.5, 3.0, "hello"),)),
    ]


def test_merlot_round_trip(tmp_path):
    for v in merlot_videos():
        touch(merlot.video_path(tmp_path, v.video_id))
    merlot.write_segments(tmp_path, merlot_videos())
    read = merlot.read_segments(tmp_path)
    assert list(read) == merlot_videos() and read.skipped.count == 0
    assert (tmp_path / "vid_a.mp4").is_file()


def merlot_line(segments, video_id="vid", duration=10.0):
    return json.dumps(
        {
            "video_id": video_id,
            "duration": duration,
            "segments": [{"start": s, "end": e, "text": "t"} for s, e in segments],
        }
    )


@pytest.mark.parametrize(
    "line, message",
    [
        (merlot_line([(0, 5), (4, 8)]), r"line 2 \(video 'vid'\) segment 1: starts at 4.0, before"),
        (merlot_line([(0, 5), (6, 11)]), r"line 2 \(video 'vid'\) segment 1: \[6.0, 11.0\] is not"),
        (merlot_line([(3, 3)]), r"line 2 \(video 'vid'\) segment 0: \[3.0, 3.0\] is not a non-"),
        (merlot_line([]), r"line 2 \(video 'vid'\): has no segments"),
        ('{"video_id": "vid", "duration": 10.0', "line 2: invalid JSON"),
        ('{"video_id": "vid", "segments": []}', "line 2 \\(video 'vid'\\): missing key 'duration'"),
    ],
)
def test_merlot_malformed_lines_name_file_and_line(tmp_path, line, message):
    good = merlot_line([(0, 1)], video_id="ok")
    write_text(tmp_path / "segments.jsonl", good + "\n" + line + "\n")
    with pytest.raises(FormatError, match=rf"segments\.jsonl: {message}"):
        merlot.read_segments(tmp_path, check_videos=False)
    kept = merlot.read_segments(tmp_path, check_videos=False, on_error="skip")
    assert [v.video_id for v in kept] == ["ok"] and kept.skipped.count == 1


def test_merlot_missing_video_raise_or_skip(tmp_path):
    merlot.write_segments(tmp_path, merlot_videos())
    touch(tmp_path / "vid_b.mp4")
    message = r"segments\.jsonl: line 1 \(video 'vid_a'\): video file .*vid_a\.mp4 not found"
    with pytest.raises(FormatError, match=message):
        merlot.read_segments(tmp_path)
    kept = merlot.read_segments(tmp_path, on_error="skip")
    assert [v.video_id for v in kept] == ["vid_b"] and kept.skipped.count == 1


def test_merlot_repeated_video_is_an_error(tmp_path):
    lines = [merlot_line([(0, 1)]), "", merlot_line([(0, 2)])]
    write_text(tmp_path / "segments.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(FormatError, match="line 3: video 'vid' is listed twice"):
        merlot.read_segments(tmp_path, check_videos=False)


# --- multiple-choice video QA (TVQA / MSRVTT-MC style) ----------------------------------------


def qa_items():
    return [
        videoqa.QAItem("q0", "vid0", "what happens first?", ("a", "b", "c", "d"), 2),
        videoqa.QAItem("q1", "vid0", "what happens last?", ("e", "f", "g", "h"), 0),
        videoqa.QAItem("q2", "vid1", "what happens right after a?", ("i", "j", "k", "l"), 3),
    ]


def qa_rows():
    return [
        {
            "qid": i.qid,
            "video_id": i.video_id,
            "question": i.question,
            "answers": list(i.answers),
            "answer": i.answer,
        }
        for i in qa_items()
    ]


def test_videoqa_round_trip_real_layout(tmp_path):
    for vid in ("vid0", "vid1"):
        touch(videoqa.video_path(tmp_path, vid))
    path = videoqa.annotation_path(tmp_path, "val")
    videoqa.write_qa(path, qa_items())
    assert path == tmp_path / "annotations" / "qa_val.json"
    assert json.loads(path.read_text()) == qa_rows()
    read = videoqa.read_qa(path, video_root=tmp_path / "videos")
    assert list(read) == qa_items() and read.skipped.count == 0
    assert list(videoqa.by_video(read)) == ["vid0", "vid1"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("question"), r"entry 1 \(qid 'q1'\): missing key 'question'"),
        (lambda r: r.update(answer=4), r"entry 1 \(qid 'q1'\): answer index 4 is out of range"),
        (lambda r: r.update(answer=-1), r"entry 1 \(qid 'q1'\): answer index -1 is out of range"),
        (lambda r: r.update(answer=True), r"entry 1 \(qid 'q1'\): 'answer' must be int"),
        (lambda r: r.update(answers=[]), r"entry 1 \(qid 'q1'\): 'answers' is empty"),
        (
            lambda r: r.update(answers=["e", 3, "g", "h"]),
            r"entry 1 \(qid 'q1'\): answers\[1\] must be str",
        ),
        (
            lambda r: r.update(answers=["e", "f", "g"]),
            r"entry 1 \(qid 'q1'\): has 3 answers, but entry 0 \(qid 'q0'\) has 4",
        ),
        (lambda r: r.update(qid="q0"), r"entry 1 \(qid 'q0'\): qid is listed twice"),
        (lambda r: r.pop("qid"), r"entry 1: missing key 'qid'"),
    ],
)
def test_videoqa_malformed_entry_raise_or_skip(tmp_path, change, message):
    rows = qa_rows()
    change(rows[1])
    path = write_text(tmp_path / "qa_train.json", json.dumps(rows))
    with pytest.raises(FormatError, match=rf"qa_train\.json: {message}"):
        videoqa.read_qa(path)
    kept = videoqa.read_qa(path, on_error="skip")
    assert [i.qid for i in kept] == ["q0", "q2"] and kept.skipped.count == 1


def test_videoqa_missing_video_raise_or_skip(tmp_path):
    touch(videoqa.video_path(tmp_path, "vid1"))
    videoqa.write_qa(tmp_path / "qa_test.json", qa_items())
    message = r"qa_test\.json: entry 0 \(qid 'q0'\): video file .*vid0\.mp4 not found"
    with pytest.raises(FormatError, match=message):
        videoqa.read_qa(tmp_path / "qa_test.json", video_root=tmp_path / "videos")
    kept = videoqa.read_qa(tmp_path / "qa_test.json", tmp_path / "videos", on_error="skip")
    assert [i.qid for i in kept] == ["q2"] and kept.skipped.count == 2


def test_videoqa_not_a_list_and_writer_refuses_what_the_reader_rejects(tmp_path):
    path = write_text(tmp_path / "qa_val.json", json.dumps({"questions": []}))
    with pytest.raises(FormatError, match=r"qa_val\.json: top level: expected a list"):
        videoqa.read_qa(path, on_error="skip")
    bad = [qa_items()[0], videoqa.QAItem("q9", "vid0", "?", ("a", "b"), 0)]
    with pytest.raises(ValueError, match="q9"):
        videoqa.write_qa(tmp_path / "out.json", bad)
    with pytest.raises(ValueError, match="out of range"):
        videoqa.write_qa(tmp_path / "out.json", [videoqa.QAItem("q", "v", "?", ("a",), 1)])


@pytest.mark.parametrize(
    "read, text",
    [
        (lambda p: lavis.read_captions(p), "[]"),
        (lambda p: anet.read_annotations(p), "{}"),
        (lambda p: videoqa.read_qa(p), "[]"),
        (lambda p: vatex.read_vatex(p), "[]"),
    ],
)
def test_an_empty_annotation_file_is_a_named_error(tmp_path, read, text):
    path = tmp_path / "annotations.json"
    path.write_text(text)
    with pytest.raises(FormatError, match=r"annotations.json.*top level.*the file is empty"):
        read(path)
