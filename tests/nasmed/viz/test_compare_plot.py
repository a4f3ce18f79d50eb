"""``plot_compare``: one line per network, sorted by mean Dice, seeds as dots."""

from __future__ import annotations

from nasmed.viz.compare import KIND_COLORS, plot_compare


def test_rows_sorted_by_mean_with_seed_dots() -> None:
    rows = [
        {
            "name": "found_a",
            "kind": "found",
            "dice_mean": 0.7,
            "dice_seed0": 0.6,
            "dice_seed1": 0.8,
        },
        {"name": "random_00", "kind": "random", "dice_mean": 0.5, "dice_seed0": 0.5},
        {"name": "random_01", "kind": "random", "dice_mean": 0.3, "dice_seed0": 0.3},
        {"name": "unet_w0.5", "kind": "baseline", "dice_mean": 0.6, "dice_seed0": 0.6},
        {"name": "broken", "kind": "random", "dice_mean": None},
    ]
    fig = plot_compare(rows, title="t")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["random_01", "random_00", "unet_w0.5", "found_a"]
    # the found network's two seeds are one scatter of 2 points at its row (y = 3)
    dots = [c for c in ax.collections if len(c.get_offsets()) == 2]
    assert len(dots) == 1 and list(dots[0].get_offsets()[:, 1]) == [3, 3]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_xdata()[0] == 0.4  # median of the random means
    assert set(KIND_COLORS) == {"found", "random", "baseline"}
