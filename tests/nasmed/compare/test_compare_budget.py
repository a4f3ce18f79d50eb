"""``reference_cost``: what the baselines are matched to, from ``costs.json``'s networks."""

from __future__ import annotations

from nasmed.compare.budget import RANDOM_MEDIAN, reference_cost
from nasmed.compare.costs import Cost

NETWORKS = {
    "found_a": Cost(50, 5.0, 0.5).to_json(),
    "random_00": Cost(10, 4.0, 0.3).to_json(),
    "random_01": Cost(30, 1.0, 0.1).to_json(),
    "random_02": Cost(20, 2.0, 0.2).to_json(),
    "unet_w0.5": Cost(99, 9.0, 0.9).to_json(),  # a baseline added earlier: not a random network
}


def test_a_found_reference_is_its_recorded_cost() -> None:
    assert reference_cost("found_a", NETWORKS) == Cost(50, 5.0, 0.5)


def test_the_random_median_is_taken_per_cost_over_the_random_networks_only() -> None:
    assert reference_cost(RANDOM_MEDIAN, NETWORKS) == Cost(20, 2.0, 0.2)
