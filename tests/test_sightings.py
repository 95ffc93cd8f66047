"""group_sightings on hand-made hits: camera groups, time order, missing timestamps, the score threshold."""

from __future__ import annotations

import json

import pytest

from pgan.index import Hit
from pgan.index.sightings import DEFAULT_MIN_SCORE, group_sightings, timestamp_key


def _hit(rank: int, score: float, camera, timestamp=None) -> Hit:
    return Hit(rank, score, image_id=100 + rank, path=f"/g/{rank}.jpg", camera=camera, timestamp=timestamp)


HITS = [  # a ranked list, as the index returns it
    _hit(1, 0.95, 2, "00030640"),
    _hit(2, 0.90, 1, "00000500"),
    _hit(3, 0.85, 2, "00030100"),
    _hit(4, 0.80, 2, None),
    _hit(5, 0.75, 1, "00000090"),
    _hit(6, 0.70, 2, ""),  # blank: no timestamp
    _hit(7, 0.65, None, "00000001"),
    _hit(8, 0.40, 3, "00000001"),  # under the default threshold
]


def test_groups_by_camera_in_time_order_cameras_by_best_score():
    s = group_sightings(HITS)
    assert [c.camera for c in s.cameras] == [2, 1, None]  # best scores 0.95, 0.90, 0.65
    cam2, cam1, unknown = s.cameras
    # timed first (earliest first, whatever their rank), then the untimed by rank
    assert [h.rank for h in cam2.hits] == [3, 1, 4, 6]
    assert (cam2.first_seen, cam2.last_seen, cam2.best_score) == ("00030100", "00030640", 0.95)
    assert [h.rank for h in cam1.hits] == [5, 2]
    assert (cam1.first_seen, cam1.last_seen) == ("00000090", "00000500")
    assert [h.rank for h in unknown.hits] == [7]
    assert s.min_score == DEFAULT_MIN_SCORE and s.below_min_score == 1  # camera 3's only hit scored 0.40


def test_threshold_none_keeps_everything_and_a_high_one_keeps_the_best():
    everything = group_sightings(HITS, min_score=None)
    assert sum(len(c.hits) for c in everything.cameras) == len(HITS) and everything.below_min_score == 0
    assert everything.cameras[-1].camera == 3
    strict = group_sightings(HITS, min_score=0.9)  # inclusive: 0.90 is kept
    assert [(c.camera, [h.rank for h in c.hits]) for c in strict.cameras] == [(2, [1]), (1, [2])]
    assert strict.below_min_score == 6
    assert group_sightings(HITS, min_score=0.99).cameras == []
    assert group_sightings([], min_score=None).cameras == []
    with pytest.raises(ValueError, match="min_score"):
        group_sightings(HITS, min_score=float("nan"))


def test_a_camera_without_any_timestamp_is_in_rank_order_with_no_time_span():
    s = group_sightings([_hit(3, 0.8, 5), _hit(1, 0.9, 5), _hit(2, 0.85, 5, "  ")])
    (cam,) = s.cameras
    assert [h.rank for h in cam.hits] == [1, 2, 3] and cam.first_seen is None and cam.last_seen is None


def test_timestamps_compare_as_numbers_when_they_are_numbers_else_as_text():
    assert timestamp_key("900") < timestamp_key("00001000")  # as text "900" > "00001000"
    assert timestamp_key(900) == (0, 900.0, "900")
    # Text compares as given: only one zero-padded format (ISO 8601) sorts in time order.
    assert timestamp_key("2024-05-01T10:00:00") < timestamp_key("2024-05-01T9:00:00Z")
    assert timestamp_key("12") < timestamp_key("2024-05-01T10:00:00")  # numbers before text
    assert timestamp_key(None) is None and timestamp_key(" ") is None
    assert timestamp_key("nan")[0] == 1  # not a usable number: text
    s = group_sightings([_hit(1, 0.9, 0, "2024-05-01T10:05:00"), _hit(2, 0.8, 0, "2024-05-01T09:59:59")])
    assert [h.rank for h in s.cameras[0].hits] == [2, 1]


def test_equal_timestamps_keep_rank_order_and_tied_cameras_sort_by_id():
    s = group_sightings([_hit(2, 0.9, 7, "5"), _hit(1, 0.9, 3, "5"), _hit(3, 0.9, 3, "5.0")])
    assert [c.camera for c in s.cameras] == [3, 7]
    assert [h.rank for h in s.cameras[0].hits] == [1, 3]


def test_to_dict_is_json_with_the_hits_fields():
    d = json.loads(json.dumps(group_sightings(HITS).to_dict()))
    assert d["min_score"] == 0.5 and d["below_min_score"] == 1
    first = d["cameras"][0]
    assert first["camera"] == 2 and first["count"] == 4 and first["first_seen"] == "00030100"
    assert [h["rank"] for h in first["hits"]] == [3, 1, 4, 6] and first["hits"][0]["path"] == "/g/3.jpg"
