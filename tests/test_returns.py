import pytest

from jitrl_cli.core.returns import discounted_returns, step_rewards


def test_returns_hand_computed_with_zeros_between_rewards():
    rewards = [0, 0, 5, 0, 0, 10, 0]
    g = 0.5
    # G_6 = 0; G_5 = 10; G_4 = 5; G_3 = 2.5; G_2 = 5 + 1.25; G_1 = 3.125; G_0 = 1.5625
    assert discounted_returns(rewards, g) == pytest.approx([1.5625, 3.125, 6.25, 2.5, 5.0, 10.0, 0.0])


def test_zero_future_rewards_are_not_replaced_by_current_score():
    # the paper's reference code substitutes the current score for zero future rewards;
    # a reward that is followed only by zeros must give G = r at that step and 0 after.
    assert discounted_returns([0, 3, 0, 0], 0.9) == pytest.approx([2.7, 3.0, 0.0, 0.0])


def test_gamma_extremes_and_validation():
    assert discounted_returns([1, 2, 3], 1.0) == pytest.approx([6, 5, 3])
    assert discounted_returns([1, 2, 3], 0.0) == pytest.approx([1, 2, 3])
    assert discounted_returns([], 0.5) == []
    with pytest.raises(ValueError):
        discounted_returns([1], 1.5)


def test_step_rewards_are_score_deltas_with_death_penalty():
    assert step_rewards([0, 5, 5, 15], initial_score=0) == [0, 5, 0, 10]
    assert step_rewards([5, 5], initial_score=5, died=True, death_penalty=10) == [0, -10]
    assert step_rewards([], died=True) == []


def test_novelty_rewards_count_stored_and_earlier_visits():
    from jitrl_cli.core.returns import novelty_rewards

    bonus = novelty_rewards(["a", "b", "a", None, "c"], {"b": 3, "c": 0}, scale=2.0)
    assert bonus == pytest.approx([2.0, 2.0 / 2.0, 2.0 / 2 ** 0.5, 0.0, 2.0])
    assert novelty_rewards(["a", "a"], {}, scale=0.0) == [0.0, 0.0]
