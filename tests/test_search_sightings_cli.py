"""``pgan search --sightings`` on a real tiny index (VeRi-style names: cameras and timestamps known)."""

import json

from pgan.index.sightings import timestamp_key


def _lines(out):
    return [json.loads(line) for line in out.strip().splitlines()]


def test_search_sightings_groups_each_querys_hits_by_camera_in_time_order(run_cli, tiny_synth, tiny_checkpoint,
                                                                          tmp_path, capsys):
    idx = tmp_path / "idx"
    assert run_cli("index", "build", "--checkpoint", tiny_checkpoint("pgan"), "--images",
                   tiny_synth / "image_test", "--out", idx, "--quiet", "--device", "cpu") == 0
    capsys.readouterr()
    queries = sorted((tiny_synth / "image_query").iterdir())[:2]
    assert run_cli("search", "--index", idx, *queries, "--top-k", "16", "--device", "cpu") == 0
    ranked = _lines(capsys.readouterr().out)  # the flat form, to compare with
    assert run_cli("search", "--index", idx, *queries, "--top-k", "16", "--device", "cpu", "--sightings",
                   "--min-similarity", "-1") == 0
    rows = _lines(capsys.readouterr().out)
    assert [r["query"] for r in rows] == [str(q) for q in queries]  # one line per query
    for row in rows:
        assert row["min_score"] == -1 and row["below_min_score"] == 0
        hits = [h for c in row["cameras"] for h in c["hits"]]
        flat = [r for r in ranked if r["query"] == row["query"]]
        assert sorted(h["image_id"] for h in hits) == sorted(r["image_id"] for r in flat)  # each hit once
        assert len(row["cameras"]) == len({r["camera"] for r in flat}) > 1
        assert [c["best_score"] for c in row["cameras"]] == sorted((c["best_score"] for c in row["cameras"]),
                                                                   reverse=True)
        for cam in row["cameras"]:
            assert cam["count"] == len(cam["hits"]) and {h["camera"] for h in cam["hits"]} == {cam["camera"]}
            times = [timestamp_key(h["timestamp"]) for h in cam["hits"]]
            assert None not in times and times == sorted(times)  # every synthetic image has a frame number
            assert (cam["first_seen"], cam["last_seen"]) == (cam["hits"][0]["timestamp"],
                                                             cam["hits"][-1]["timestamp"])
    # The default threshold: what is left out is counted.
    assert run_cli("search", "--index", idx, queries[0], "--top-k", "16", "--device", "cpu", "--sightings") == 0
    (row,) = _lines(capsys.readouterr().out)
    kept = [h for c in row["cameras"] for h in c["hits"]]
    assert row["min_score"] == 0.5 and all(h["score"] >= 0.5 for h in kept)
    assert len(kept) + row["below_min_score"] == 16
    # Bad flags are one-line errors.
    for argv, message in [(("--min-similarity", "0.3"), "add --sightings"),
                          (("--sightings", "--min-similarity", "3"), "between -1 and 1")]:
        assert run_cli("search", "--index", idx, queries[0], "--device", "cpu", *argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pgan: error:") and message in err and "\n" not in err
