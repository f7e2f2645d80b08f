"""Thompson sampling: chances of being best, and the traffic they buy."""

from __future__ import annotations

from optimizer_operator.analysis.bandit import ArmReward, allocate, chance_best


def test_a_clearly_better_arm_is_almost_surely_best_and_direction_matters() -> None:
    rewards = {
        "v1": ArmReward(0.80, 0.01, 500),
        "canary-a": ArmReward(0.90, 0.01, 500),
        "canary-b": ArmReward(0.70, 0.01, 500),
    }
    up = chance_best(rewards, "higherIsBetter", seed=1)
    assert up["canary-a"] > 0.99 and abs(sum(up.values()) - 1) < 1e-9
    down = chance_best(rewards, "lowerIsBetter", seed=1)
    assert down["canary-b"] > 0.99


def test_equal_arms_share_the_chance() -> None:
    rewards = {k: ArmReward(0.8, 0.05, 100) for k in ("a", "b")}
    chances = chance_best(rewards, "higherIsBetter", seed=2)
    assert abs(chances["a"] - 0.5) < 0.02


def test_allocation_sums_to_100_with_a_floor() -> None:
    weights = allocate({"a": 0.97, "b": 0.02, "c": 0.01}, 5)
    assert sum(weights.values()) == 100 and min(weights.values()) >= 5
    assert weights["a"] == max(weights.values())
    assert allocate({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 0) == {"a": 33, "b": 33, "c": 34}
