"""What limits addition: read-out scores, placement and the book's summaries."""

from __future__ import annotations

import numpy as np

from conceptlib.operators.evaluate import in_top
from conceptlib.operators.limits import (
    READOUTS,
    addition_per_concept,
    format_limits,
    limit_findings,
    place_apart,
    readout_scores,
)


def test_winner_counts_only_the_pixels_a_channel_reads_most_strongly() -> None:
    maps = np.zeros((1, 3, 8, 8), np.float32)
    maps[0, 0, 2:4, 2:4] = 0.9  # a strong small stroke: 4 pixels
    maps[0, 1, 1:5, 1:5] = 0.6  # a weaker look-alike over it: 16 pixels
    maps[0, 2, 6, 6] = 0.4  # below 0.5: never counted
    s = readout_scores(maps)
    assert set(s) == set(READOUTS)
    assert s["area"][0, 1] > s["area"][0, 0]  # the look-alike covers more
    assert round(s["winner"][0, 0]) == 4 and round(s["winner"][0, 1]) == 12
    assert round(s["winner"][0, 2]) == 0 and s["peak"][0, 0] == np.float32(0.9)
    assert np.allclose(s["energy"][0], (maps[0] ** 2).sum((1, 2)))


def test_in_top_reads_the_three_highest() -> None:
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    assert in_top(scores, np.array([2, 0])).tolist() == [True, False]
    assert in_top(scores, np.array([3, 3])).tolist() == [False, True]


def test_place_apart_moves_ink_off_the_digit_and_not_off_the_image() -> None:
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[:, 10:18, 10:14] = 255  # a vertical bar
    images = np.zeros((2, 28, 28), np.uint8)
    images[:, 12:16, 12:16] = 255  # a square on the bar
    assert np.array_equal(place_apart(digits, images, 0), images)
    moved = place_apart(digits, images, 4)
    before = ((images > 127) & (digits > 127)).sum()
    after = ((moved > 127) & (digits > 127)).sum()
    assert after < before
    assert (moved > 127).sum() == (images > 127).sum()  # all of its ink kept
    edge = np.zeros((1, 28, 28), np.uint8)
    edge[0, 0:4, 0:4] = 255  # in the corner: moving up or left loses ink
    digit = np.zeros((1, 28, 28), np.uint8)
    digit[0, 0:8, 0:8] = 255
    out = place_apart(digit, edge, 2)
    assert (out > 127).sum() >= 0.9 * (edge > 127).sum()


def test_addition_per_concept_averages_over_the_seeds_that_added_it() -> None:
    runs = [
        {"pixel": {"addition": 0.5, "addition_0": 1.0, "addition_2": 0.0}},
        {"pixel": {"addition": 0.5, "addition_0": 0.5}},
    ]
    assert addition_per_concept(runs, "pixel") == {0: 0.75, 2: 0.0}


def _summary(winner: float, far: float) -> dict:
    rate = {"mean": 0.5, "sd": 0.01}
    return {
        "readout": {
            "energy": rate,
            "peak": {"mean": 0.4, "sd": 0.02},
            "area": {"mean": 0.45, "sd": None},
            "winner": {"mean": winner, "sd": 0.02},
        },
        "placement": {"0": rate, "2": {"mean": 0.45, "sd": 0.0},
                      "4": {"mean": far, "sd": 0.0}},
        "rank": [0.3, 0.1, 0.1, 0.2, 0.1] + [0.2 / 13] * 13,
    }  # fmt: skip


def test_limit_findings_say_what_the_numbers_say() -> None:
    said = limit_findings(_summary(winner=0.48, far=0.3))
    assert said["score_said"].startswith("no other score")
    assert "0.480" in said["score_said"] and said["placed_said"].startswith("harder")
    assert np.isclose(said["rank_top3"], 0.5) and np.isclose(said["rank_4_5"], 0.3)
    said = limit_findings(_summary(winner=0.7, far=0.6))
    assert said["score_said"].startswith("another score")
    assert "0.700" in said["score_said"]
    assert said["placed_said"].startswith("easier")


def test_format_limits_has_a_row_per_readout_and_placement() -> None:
    table = format_limits(_summary(winner=0.48, far=0.3))
    lines = table.splitlines()
    assert len(lines) == 2 + len(READOUTS) + 3
    assert "| score: pixels above 0.5 | 0.450 |" in table  # sd None: no ±
    assert "placed: as cut" in table and "0.500 ± 0.010" in table
