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


def test_final_credit_charges_the_last_reward_to_the_last_steps_only():
    # +1 at step 0, then a death (−20) at step 3, γ = 0.5: by default every return holds the death
    rewards = [1.0, 0.0, 0.0, -20.0]
    assert discounted_returns(rewards, 0.5) == pytest.approx([-1.5, -5.0, -10.0, -20.0])
    # H = 2: the death enters G_2 and G_3 only; the earlier steps keep what they earned themselves
    assert discounted_returns(rewards, 0.5, final_credit=2) == pytest.approx([1.0, 0.0, -10.0, -20.0])
    assert discounted_returns(rewards, 0.5, final_credit=1) == pytest.approx([1.0, 0.0, 0.0, -20.0])
    # H ≥ T: the Monte Carlo return
    assert discounted_returns(rewards, 0.5, final_credit=4) == discounted_returns(rewards, 0.5)
    assert discounted_returns([], 0.5, final_credit=1) == []
    # d = −20 of a last reward of −19 (a novelty bonus of 1 on the death's step): the bonus stays in every return
    assert discounted_returns([1.0, 0.0, 0.0, -19.0], 0.5, final_credit=1, final_reward=-20.0) == pytest.approx(
        [1.125, 0.25, 0.5, -19.0])
    with pytest.raises(ValueError):
        discounted_returns(rewards, 0.5, final_credit=0)


@pytest.mark.slow
@pytest.mark.parametrize("novelty", [0, 1])
def test_death_credit_in_a_real_zork2_episode(tmp_path, novelty):
    """`play --death-credit 1` on the real zork2 engine and model: seed 0's first episode jumps off the Foot Bridge
    (the step log of `bench/RESULTS.md`, "zork2 below static"). The stored returns of every step before the death
    hold nothing of it (zork2 gives no points before), the death's own step holds the points lost and the penalty.
    With `--novelty 1` (the same moves: the first episode has no memory to read) every step's reward holds its novelty
    bonus, the death's step's included, and the earlier returns keep that bonus while the death stays out of them."""
    import json
    import sqlite3

    from tests.conftest import run_cli

    mem = tmp_path / "mem"
    proc = run_cli("play", "zork2", "--seed", "0", "--episodes", "1", "--max-steps", "60", "--death-credit", "1",
                   "--novelty", str(novelty), "--memory", str(mem), "--json")
    assert proc.returncode == 0, proc.stderr
    episode = json.loads(proc.stdout.splitlines()[-1])
    assert episode["died"] and episode["steps"] < 60 and episode["params"]["death_credit"] == 1
    with sqlite3.connect(mem / "memory.sqlite") as db:
        rows = db.execute("SELECT reward, ret FROM steps ORDER BY step").fetchall()
    assert len(rows) == episode["steps"] >= 3
    rewards = [r for r, _ in rows]
    bonus = rewards[-1] + 20.0  # −10 points lost, −10 the death penalty; the rest is the death step's novelty bonus
    if not novelty:
        assert all(r == 0.0 for r in rewards[:-1]), rows  # no points before the death: nothing to discount
        assert [g for _, g in rows[:-1]] == [0.0] * (len(rows) - 1)
        assert bonus == pytest.approx(0.0)
    else:
        assert all(r > 0 for r in rewards[:-1]), rows  # a novelty bonus on every step, no points
        assert bonus > 0
    expected = discounted_returns(rewards[:-1] + [bonus], 0.95)[:-1] + [rewards[-1]]
    assert [g for _, g in rows] == pytest.approx(expected)
