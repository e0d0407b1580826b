import numpy as np
import pytest

from jitrl_cli.core.advantage import Neighbour, estimate_advantages


def nb(action, ret):
    return Neighbour(action, ret)


def test_q_v_and_a_from_hand_made_neighbours():
    neighbours = [nb("north", 4.0), nb("north", 2.0), nb("open mailbox", 0.0), nb("west", -3.0)]
    est = estimate_advantages(["north", "Open  Mailbox", "west"], neighbours, exploration="none")
    assert est.value == pytest.approx(0.75)
    assert est.q == pytest.approx([3.0, 0.0, -3.0])
    assert est.raw == pytest.approx([2.25, -0.75, -3.75])
    assert est.normalized == pytest.approx([2.25 / 3.75, -0.75 / 3.75, -1.0])
    assert list(est.counts) == [2, 1, 1]
    assert np.max(np.abs(est.normalized)) == pytest.approx(1.0)


def test_no_neighbours_means_zero_advantage():
    est = estimate_advantages(["a", "b"], [], rng=np.random.default_rng(0))
    assert est.value == 0.0 and np.all(est.normalized == 0) and est.n_neighbours == 0


def test_paper_bonus_always_applied_when_lambda_is_one():
    neighbours = [nb("a", 2.0), nb("b", 0.0)]
    est = estimate_advantages(["a", "b", "c"], neighbours, exploration="paper", alpha=1.0, bonus_prob=1.0,
                              rng=np.random.default_rng(0))
    # V = 1; Q(c) = V + α/|N| = 1.5; A = [1, -1, 0.5]
    assert est.raw == pytest.approx([1.0, -1.0, 0.5])
    assert list(est.bonus) == [False, False, True]


def test_paper_bonus_never_applied_when_lambda_is_zero():
    est = estimate_advantages(["a", "c"], [nb("a", 2.0), nb("b", 0.0)], exploration="paper", bonus_prob=0.0,
                              rng=np.random.default_rng(0))
    assert est.raw[1] == 0.0 and not est.bonus[1]


def test_paper_bonus_frequency_is_lambda():
    rng = np.random.default_rng(1)
    hits = sum(
        estimate_advantages(["a", "c"], [nb("a", 1.0)], exploration="paper", bonus_prob=0.3, rng=rng).bonus[1]
        for _ in range(4000)
    )
    assert abs(hits / 4000 - 0.3) < 0.03


def test_ucb_is_deterministic_and_favours_unseen():
    neighbours = [nb("a", 1.0)] * 3 + [nb("b", 1.0)]
    e1 = estimate_advantages(["a", "b", "c"], neighbours, exploration="ucb", alpha=1.0)
    e2 = estimate_advantages(["a", "b", "c"], neighbours, exploration="ucb", alpha=1.0)
    assert np.array_equal(e1.raw, e2.raw)
    # all Q equal V, so the advantage is the count bonus: α·sqrt(ln(5)/(n+1))
    assert e1.raw == pytest.approx(np.sqrt(np.log(5) / np.array([4, 2, 1])))
    assert e1.normalized[2] == pytest.approx(1.0)


def test_paper_mode_needs_rng():
    with pytest.raises(ValueError):
        estimate_advantages(["a", "c"], [nb("a", 1.0)], exploration="paper", bonus_prob=0.5)


def test_max_q_estimate_keeps_the_best_return_of_an_action():
    # a took the 10-point path once and wandered off twice; the mean would rank it below b
    neighbours = [nb("a", 10.0), nb("a", 0.0), nb("a", 0.0), nb("b", 4.0)]
    mean = estimate_advantages(["a", "b"], neighbours, exploration="none")
    best = estimate_advantages(["a", "b"], neighbours, exploration="none", q_estimate="max")
    assert mean.q == pytest.approx([10 / 3, 4.0]) and mean.normalized[1] > mean.normalized[0]
    assert best.value == pytest.approx(3.5)  # V̂ stays the mean of all neighbours
    assert best.q == pytest.approx([10.0, 4.0])
    assert best.raw == pytest.approx([6.5, 0.5]) and best.normalized == pytest.approx([1.0, 0.5 / 6.5])
    with pytest.raises(ValueError):
        estimate_advantages(["a"], neighbours, exploration="none", q_estimate="median")


def test_expectimax_averages_over_chance_outcomes_and_maximises_over_the_agents_choices():
    # in the dark room W, "north" survived twice (led to room X, best return 8) and once the grue ended the game
    # (G = −16); "wait" always led back to W. Max hides the death; expectimax weighs it by how often it happened.
    took = [Neighbour("north", 8.0, world="W", outcome="X"), Neighbour("north", 2.0, world="W", outcome="X"),
            Neighbour("north", -16.0, world="W", outcome="terminal"), Neighbour("wait", 1.0, world="W", outcome="W"),
            Neighbour("wait", 0.5, world="W", outcome="W")]
    best = estimate_advantages(["north", "wait"], took, exploration="none", q_estimate="max")
    chance = estimate_advantages(["north", "wait"], took, exploration="none", q_estimate="expectimax")
    assert best.q == pytest.approx([8.0, 1.0]) and best.normalized[0] > best.normalized[1]
    assert chance.q == pytest.approx([(2 * 8.0 - 16.0) / 3, 1.0])  # a deterministic action keeps its max
    assert chance.value == pytest.approx(best.value) and chance.normalized[1] > chance.normalized[0]
    # the agent's own choices are still maximised over: the same action from another world state that always
    # led on, and a step whose successor is unknown (cut at the step limit) in a state with known outcomes
    more = took + [Neighbour("north", 5.0, world="V", outcome="Y"), Neighbour("north", 50.0, world="W", outcome=None)]
    assert estimate_advantages(["north"], more, exploration="none", q_estimate="expectimax").q == pytest.approx([5.0])
    # unknown outcomes alone, or no world hash at all (the web), give the max
    blind = [Neighbour("north", 3.0, world="U"), Neighbour("north", 7.0, world="U"), Neighbour("north", 4.0)]
    assert estimate_advantages(["north"], blind, exploration="none", q_estimate="expectimax").q == pytest.approx([7.0])
    assert estimate_advantages(["north"], blind[2:], exploration="none", q_estimate="expectimax").q == pytest.approx([4.0])


def test_across_worlds_mean_weighs_the_world_states_by_their_steps():
    # a state never visited: its ANN neighbours went "north" in the dark from two world states of the Dark Tunnel;
    # from W the grue struck twice and once the move led on (return 0), from V it led on once. The max over
    # world states picks V (Q̂ 0: as if the agent could choose to be in V); the mean counts W's steps too.
    took = [Neighbour("north", -10.0, world="W", outcome="terminal"), Neighbour("north", -10.0, world="W", outcome="terminal"),
            Neighbour("north", 0.0, world="W", outcome="X"), Neighbour("north", 0.0, world="V", outcome="Y"),
            Neighbour("wait", -1.0, world="W", outcome="W")]
    q_w = (2 * -10.0 + 0.0) / 3
    best = estimate_advantages(["north", "wait"], took, exploration="none", q_estimate="expectimax")
    chance = estimate_advantages(["north", "wait"], took, exploration="none", q_estimate="expectimax", across_worlds="mean")
    assert best.q == pytest.approx([0.0, -1.0]) and best.normalized[0] > best.normalized[1]
    assert chance.q == pytest.approx([(3 * q_w + 1 * 0.0) / 4, -1.0]) and chance.normalized[1] > chance.normalized[0]
    # one world state's own steps: the same either way; the back-off states (similar) are weighed the same way
    own = [n for n in took if n.world == "W"]
    assert estimate_advantages(["north"], own, exploration="none", q_estimate="expectimax", across_worlds="mean").q == \
        pytest.approx(estimate_advantages(["north"], own, exploration="none", q_estimate="expectimax").q)
    here = [Neighbour("wait", 0.0, world="H", outcome="H")]
    similar = [n for n in took if n.action == "north"]
    backed = estimate_advantages(["north", "wait"], here, exploration="none", q_estimate="expectimax", similar=similar,
                                 across_worlds="mean")
    assert backed.backed_off.tolist() == [True, False] and backed.q[0] == pytest.approx(chance.q[0])
    with pytest.raises(ValueError):
        estimate_advantages(["north"], took, q_estimate="expectimax", across_worlds="min")


def test_ucb_counts_actions_already_taken_earlier_in_the_episode():
    # no memory yet, but the agent is back in a state where it already went north twice
    est = estimate_advantages(["north", "south", "open door"], [], exploration="ucb", pending_counts=[2, 0, 0])
    assert est.normalized == pytest.approx([1 / 3 ** 0.5, 1.0, 1.0])
    # with neighbours, n(a) + m(a) is what counts
    est = estimate_advantages(["a", "b"], [nb("a", 0.0), nb("b", 0.0)], exploration="ucb", pending_counts=[0, 3])
    assert est.raw[0] > est.raw[1]
    # other modes ignore them; no memory and no revisit means no advantage at all
    assert not estimate_advantages(["a", "b"], [], exploration="paper", pending_counts=[1, 0],
                                   rng=np.random.default_rng(0)).normalized.any()
    assert not estimate_advantages(["a", "b"], [], exploration="ucb", pending_counts=[0, 0]).normalized.any()
    with pytest.raises(ValueError):
        estimate_advantages(["a", "b"], [], exploration="ucb", pending_counts=[1])


def test_puct_weighs_the_count_bonus_by_the_prior():
    # zork2's Foot Bridge: north and south tried and harmless, the ravine jump untried and all but ruled out by the model
    candidates = ["north", "south", "jump", "look around ravine"]
    neighbours = [nb("north", 0.0), nb("south", 0.0)]
    prior = np.array([0.3, 0.69, 0.001, 0.009])
    ucb = estimate_advantages(candidates, neighbours, exploration="ucb", alpha=1.0)
    puct = estimate_advantages(candidates, neighbours, exploration="puct", alpha=1.0, prior=prior)
    assert ucb.normalized[2] == pytest.approx(1.0)  # ucb: the untried jump gets the largest bonus
    # puct: α·π(a)·sqrt(|N| + m)/(n(a) + m(a) + 1), so the likely, tried south outranks the unlikely, untried jump
    assert puct.raw == pytest.approx(prior * np.sqrt(2) / np.array([2, 2, 1, 1]))
    assert int(np.argmax(puct.normalized)) == 1 and puct.normalized[2] < 0.01
    assert puct.bonus.all() and puct.q[2] == pytest.approx(puct.raw[2])
    # a revisit within the episode counts (m(a)), as with ucb; a first visit with no memory changes nothing
    again = estimate_advantages(candidates, neighbours, exploration="puct", prior=prior, pending_counts=[0, 2, 0, 0])
    assert again.raw[1] == pytest.approx(0.69 * 2 / 4) and again.raw[0] == pytest.approx(0.3 * 2 / 2)
    assert not estimate_advantages(candidates, [], exploration="puct", prior=prior).normalized.any()
    with pytest.raises(ValueError, match="prior"):
        estimate_advantages(candidates, neighbours, exploration="puct")
    with pytest.raises(ValueError, match="shape"):
        estimate_advantages(candidates, neighbours, exploration="puct", prior=[0.5, 0.5])


def test_backoff_states_value_what_this_state_never_tried_by_its_similar_states():
    # zork2's Foot Bridge in a new world state: north and south tried here; "jump" killed (G = −10) in two similar
    # world states (other objects lying about), "look around ravine" was harmless there, "west" was taken nowhere
    candidates = ["north", "south", "jump", "look around ravine", "west"]
    neighbours = [nb("north", 1.0), nb("south", 0.0)]
    similar = [nb("jump", -10.0), nb("jump", -10.0), nb("look around ravine", 0.0), nb("north", 50.0)]
    plain = estimate_advantages(candidates, neighbours, exploration="ucb", alpha=1.0, q_estimate="max")
    # every untried candidate gets the same, largest bonus: the jump looks as good as the harmless look and west
    assert plain.normalized[2] == plain.normalized[3] == plain.normalized[4] > plain.normalized[1]
    est = estimate_advantages(candidates, neighbours, exploration="ucb", alpha=1.0, q_estimate="max", similar=similar)
    # V̂ is this state's own (0.5); north keeps its own return, not the similar state's 50
    assert est.value == pytest.approx(0.5) and est.q[0] == pytest.approx(1.0)
    assert est.counts.tolist() == [1, 1, 2, 1, 0]
    assert est.backed_off.tolist() == [False, False, True, True, False]
    bonus = np.sqrt(np.log(3) / (est.counts + 1))
    assert est.raw == pytest.approx(np.array([1.0, 0.0, -10.0, 0.0, 0.5]) - 0.5 + bonus)
    assert est.normalized[2] == pytest.approx(-1.0) and est.normalized[4] > est.normalized[3]  # west keeps its bonus
    # a state never visited has no own steps: its neighbours already are the similar states, nothing to back off to
    alone = estimate_advantages(candidates, [], exploration="none", similar=similar)
    assert not alone.normalized.any() and not alone.backed_off.any()


def test_deadly_actions_are_valued_by_every_step_of_their_situation_whatever_the_neighbours_say():
    # zork2's Foot Bridge after the wizard's visit, a world state never seen: its ANN neighbours stand in; "jump" killed
    # twice on this bridge with nothing carried (G = −20), once in each of two world states of the situation; an ANN
    # neighbour from another place jumped harmlessly (G = 5)
    candidates = ["north", "south", "jump", "wait"]
    neighbours = [nb("north", 1.0), nb("south", 0.0), Neighbour("jump", 5.0, world="X", outcome="Y")]
    deadly = [Neighbour("jump", -20.0, world="A", outcome="terminal"), Neighbour("jump", -20.0, world="B", outcome="terminal")]
    similar = [nb("wait", 2.0)]
    plain = estimate_advantages(candidates, neighbours, exploration="ucb", alpha=1.0, q_estimate="expectimax")
    assert plain.q[2] == pytest.approx(5.0) and plain.normalized[2] == pytest.approx(1.0)  # the harmless jump leads
    est = estimate_advantages(candidates, neighbours, exploration="ucb", alpha=1.0, q_estimate="expectimax",
                              deadly=deadly, similar=similar)
    # jump: the situation's deaths, not the neighbour's harmless jump; wait: the similar state (no death here)
    assert est.counts.tolist() == [1, 1, 2, 1] and est.backed_off.tolist() == [False, False, True, True]
    assert est.q[2] == pytest.approx(-20.0) and est.q[3] == pytest.approx(2.0)
    value = 2.0
    bonus = np.sqrt(np.log(4) / (est.counts + 1))
    assert est.raw == pytest.approx(np.array([1.0, 0.0, -20.0, 2.0]) - value + bonus)
    assert est.value == pytest.approx(value) and est.normalized[2] == pytest.approx(-1.0)
    # a survival in a third world state of the situation: the world states are chance, so each outcome counts as often
    # as it happened (the max over world states would be 3 and hide both deaths), under max as under expectimax
    survived = deadly + [Neighbour("jump", 3.0, world="C", outcome="D")]
    for q_estimate in ("expectimax", "max"):
        est = estimate_advantages(candidates, neighbours, exploration="none", q_estimate=q_estimate, deadly=survived)
        assert est.q[2] == pytest.approx((2 * -20.0 + 3.0) / 3) and est.counts[2] == 3
    mean = estimate_advantages(candidates, neighbours, exploration="none", q_estimate="mean", deadly=survived)
    assert mean.q[2] == pytest.approx(-37 / 3)
    # no neighbours at all (V̂ = 0): the deadly action still gets A = Q̂ < 0, the others 0
    alone = estimate_advantages(candidates, [], exploration="ucb", alpha=1.0, q_estimate="expectimax", deadly=deadly)
    assert alone.value == 0.0 and alone.raw.tolist() == [0.0, 0.0, -20.0, 0.0]
    assert alone.normalized.tolist() == [0.0, 0.0, -1.0, 0.0]


def test_deadly_mean_values_the_move_into_a_trap_by_its_mean_return_not_the_best_per_next_state():
    # zork2's formal garden: "west" leads into the dark Path Near Stream (the same next world state "P" every time);
    # once the agent survived the grue there to the end of the episode (G = 0), three times it died at the next step
    # (G = −19). The expectimax takes the best return per next state, 0, as if the survival were the agent's choice;
    # with the continuation as chance (`--avoid-deaths-horizon` > 1) Q̂ is the mean, −14.25
    candidates = ["north", "west"]
    neighbours = [nb("north", 0.0), nb("west", 0.0)]
    trap = [Neighbour("west", g, world=w, outcome="P") for g, w in ((0.0, "A"), (-19.0, "A"), (-19.0, "B"), (-19.0, "C"))]
    best = estimate_advantages(candidates, neighbours, exploration="none", q_estimate="expectimax", deadly=trap)
    assert best.q[1] == pytest.approx(0.0) and best.counts[1] == 4
    for q_estimate in ("expectimax", "max", "mean"):
        est = estimate_advantages(candidates, neighbours, exploration="none", q_estimate=q_estimate, deadly=trap,
                                  deadly_mean=True)
        assert est.q[1] == pytest.approx(-14.25) and est.backed_off.tolist() == [False, True]
        assert est.normalized.tolist() == pytest.approx([0.0, -1.0])


def test_avoid_cycles_puts_actions_already_taken_from_this_state_last():
    # "take egg" began the best trajectory once, but this episode it already led from here straight back into a
    # state visited before (it closed a cycle)
    neighbours = [nb("take egg", 10.0), nb("north", 4.0), nb("south", 0.0)]
    candidates = ["take egg", "north", "south", "west"]
    plain = estimate_advantages(candidates, neighbours, exploration="none", q_estimate="max", pending_counts=[1, 0, 0, 0])
    assert plain.normalized[0] == pytest.approx(1.0)
    est = estimate_advantages(candidates, neighbours, exploration="none", q_estimate="max", repeated=[True, False, False, False])
    # V̂ = 14/3; the fresh candidates are normalised among themselves by max |A| = 14/3
    assert est.raw == pytest.approx(plain.raw)
    assert est.normalized == pytest.approx([-1.0, (4 - 14 / 3) / (14 / 3), -1.0, 0.0])
    # without any memory a revisit alone is enough; every candidate repeated leaves them all at −1
    est = estimate_advantages(["a", "b", "c"], [], exploration="none", repeated=[False, True, False])
    assert est.normalized == pytest.approx([0.0, -1.0, 0.0])
    est = estimate_advantages(["a", "b"], [], exploration="ucb", pending_counts=[1, 1], repeated=[True, True])
    assert est.normalized == pytest.approx([-1.0, -1.0])


def test_safe_cycles_lets_the_way_back_beat_moves_that_lost():
    # a place whose way back ("southeast", G 0) closed a cycle earlier in the episode, and every other move has lost
    # (one death in six for "northeast", one in one for the rest), as zork2's dark Path Near Stream's neighbours say
    neighbours = ([nb("southeast", 0.0)] * 3 + [nb("northeast", 0.0)] * 5 + [nb("northeast", -20.0)]
                  + [nb("east", -18.05), nb("jump", -20.0)])
    candidates = ["southeast", "northeast", "east", "jump"]
    repeated = [True, False, False, False]
    kw = dict(exploration="ucb", alpha=1.0, q_estimate="mean", repeated=repeated)
    plain = estimate_advantages(candidates, neighbours, **kw)
    assert plain.normalized[0] == -1.0 and np.argmax(plain.normalized) == 1  # cycle avoidance sends it into the dark
    est = estimate_advantages(candidates, neighbours, safe_cycles=True, **kw)
    # every fresh candidate is a known loss (Q̂ < 0): the cycle keeps its own Ã, all four normalised together
    assert est.raw == pytest.approx(plain.raw)
    assert est.normalized == pytest.approx(est.raw / np.max(np.abs(est.raw)))
    assert np.argmax(est.normalized) == 0 and est.q[1] == pytest.approx(-20 / 6)
    # an untried candidate is not a known loss: cycle avoidance holds (the untried one starts from Q̂ = V̂ + bonus)
    est = estimate_advantages(candidates + ["turn on lamp"], neighbours, safe_cycles=True,
                              **(kw | {"repeated": repeated + [False]}))
    assert est.normalized[0] == -1.0 and est.normalized[4] > -1.0
    # nor is a tried candidate that did not lose (Q̂ = 0 ≥ 0)
    est = estimate_advantages(candidates, neighbours + [nb("jump", 0.0)], safe_cycles=True, q_estimate="max",
                              exploration="ucb", repeated=repeated)
    assert est.normalized[0] == -1.0
    # with every candidate repeated there is nothing fresh to compare: all stay at −1
    est = estimate_advantages(["a", "b"], [nb("a", -1.0)], exploration="none", repeated=[True, True], safe_cycles=True)
    assert list(est.normalized) == [-1.0, -1.0]


def test_a_cycle_in_a_state_without_neighbours_needs_no_paper_bonus():
    # the first episode of an empty memory (the web's defaults: the paper's bonus, α/|N(s)|) comes back to a page
    # with a click that closed a cycle: that click gets Ã = −1, the others the prior's Ã = 0, and no bonus
    est = estimate_advantages(["click a", "click b"], [], exploration="paper", alpha=1.0, bonus_prob=1.0,
                              rng=np.random.default_rng(0), repeated=[True, False])
    assert list(est.normalized) == [-1.0, 0.0] and not est.bonus.any() and est.n_neighbours == 0


def test_optimistic_floor_values_untried_actions_at_least_like_doing_nothing():
    # the living room with the painting (zork1): "east" and "close case" were tried and harmless (G = 0), "open trap"
    # led to a death later (G = −13.3); "put painting in case" was never tried
    neighbours = [nb("east", 0.0), nb("east", 0.0), nb("close case", 0.0), nb("open trap", -13.3)]
    candidates = ["east", "close case", "open trap", "put painting in case"]
    value = -13.3 / 4
    plain = estimate_advantages(candidates, neighbours, exploration="ucb", alpha=1.0, q_estimate="max")
    bonus = np.sqrt(np.log(5) / np.array([3, 2, 2, 1]))
    assert plain.raw == pytest.approx(np.array([0.0, 0.0, -13.3, value]) - value + bonus)
    # the harmless tried action beats the untried one: exploration stops where the known trajectories end
    assert plain.normalized[0] > plain.normalized[3]
    est = estimate_advantages(candidates, neighbours, exploration="ucb", alpha=1.0, q_estimate="max", unseen_q="optimistic")
    assert est.raw == pytest.approx(np.array([0.0, 0.0, -13.3, 0.0]) - value + bonus)
    assert est.q[3] == pytest.approx(bonus[3]) and np.argmax(est.normalized) == 3
    # without a bonus the floor alone lifts the untried action to Q̂ = 0; with V̂ ≥ 0 it changes nothing
    est = estimate_advantages(candidates, neighbours, exploration="none", q_estimate="max", unseen_q="optimistic")
    assert est.raw == pytest.approx([-value, -value, -13.3 - value, -value])
    good = [nb("north", 30.0), nb("south", 0.0)]
    assert estimate_advantages(["north", "south", "up"], good, exploration="ucb", q_estimate="max",
                               unseen_q="optimistic").raw == pytest.approx(
        estimate_advantages(["north", "south", "up"], good, exploration="ucb", q_estimate="max").raw)


def test_zero_start_ranks_unknown_buttons_below_the_known_winner_of_a_solved_page():
    # click-button, late in a run: all ten neighbours clicked the goal button and succeeded (V̂ = Q̂ = 1)
    neighbours = [nb('click button "#goal"', 1.0)] * 10
    candidates = ['click button "Cancel"', 'click button "Previous"', 'click button "#goal"']
    rng = np.random.default_rng(0)
    # the paper's start (Q̂ = V̂) with its bonus (λ = 1): the unknown buttons get A = α/|N|, the winner A = 0,
    # so after normalisation β pushes the posterior towards the buttons never tried
    paper = estimate_advantages(candidates, neighbours, exploration="paper", alpha=1.0, bonus_prob=1.0, rng=rng)
    assert paper.raw == pytest.approx([0.1, 0.1, 0.0]) and paper.normalized == pytest.approx([1.0, 1.0, 0.0])
    # zero: an unknown button starts from Q̂ = 0, A = 0 − V̂ (+ the bonus): the winner ranks first
    zero = estimate_advantages(candidates, neighbours, exploration="paper", alpha=1.0, bonus_prob=1.0, rng=rng,
                               unseen_q="zero")
    assert zero.q == pytest.approx([0.1, 0.1, 1.0]) and zero.raw == pytest.approx([-0.9, -0.9, 0.0])
    assert zero.normalized == pytest.approx([-1.0, -1.0, 0.0])
    none = estimate_advantages(candidates, neighbours, exploration="none", unseen_q="zero")
    assert none.q == pytest.approx([0.0, 0.0, 1.0]) and none.normalized == pytest.approx([-1.0, -1.0, 0.0])
    # where the neighbours failed (V̂ < 0) zero is the optimistic start: an unknown button ranks above them
    failed = [nb('click button "okay"', -1.0), nb('click button "#goal"', 1.0), nb('click button "okay"', -1.0)]
    for start in ("zero", "optimistic"):
        est = estimate_advantages(['click button "okay"', 'click button "no"', 'click button "#goal"'], failed,
                                  exploration="none", unseen_q=start)
        assert est.raw == pytest.approx(np.array([-1.0, 0.0, 1.0]) + 1 / 3)
    # pessimistic = min(V̂, 0): zero on the solved page, the paper's start (A = 0) on the failing one
    assert estimate_advantages(candidates, neighbours, exploration="none", unseen_q="pessimistic").raw == pytest.approx(
        none.raw)
    est = estimate_advantages(['click button "okay"', 'click button "no"', 'click button "#goal"'], failed,
                              exploration="none", unseen_q="pessimistic")
    assert est.raw == pytest.approx([-2 / 3, 0.0, 4 / 3])
    with pytest.raises(ValueError):
        estimate_advantages(candidates, neighbours, exploration="none", unseen_q="neutral")


def test_backoff_values_a_candidate_no_neighbour_took_by_the_actions_sharing_its_coarser_key():
    def coarse(key):
        return key.split(" ")[0]  # "click box-3" -> "click"

    neighbours = [nb("click box-1", 1.0), nb("click box-2", 1.0), nb("type a", -1.0), nb("type b", -1.0),
                  nb("type c", -1.0), nb("click box-7", 1.0)]
    candidates = ["click box-7", "click box-9", "click box-8", "type z", "press q"]
    est = estimate_advantages(candidates, neighbours, exploration="paper", alpha=1.0, bonus_prob=1.0,
                              rng=np.random.default_rng(0), backoff=coarse)
    assert est.value == pytest.approx(0.0)
    # the taken key keeps its own statistics; unseen keys take their back-off key's, shared, and get no bonus
    assert list(est.backed_off) == [False, True, True, True, False]
    assert list(est.counts) == [1, 3, 3, 3, 0]
    assert est.q[:4] == pytest.approx([1.0, 1.0, 1.0, -1.0])
    assert list(est.bonus) == [False, False, False, False, True]  # only a candidate unseen at both levels
    plain = estimate_advantages(candidates, neighbours, exploration="paper", alpha=1.0, bonus_prob=1.0,
                                rng=np.random.default_rng(0))
    assert list(plain.counts) == [1, 0, 0, 0, 0] and plain.bonus[1:].all() and not plain.backed_off.any()
