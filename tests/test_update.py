import numpy as np
import pytest

from jitrl_cli.core.update import choose_action, posterior_logits, softmax


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_distribution_is_prior_times_exp_beta_a(seed):
    rng = np.random.default_rng(seed)
    n = 6
    prior = rng.dirichlet(np.ones(n))
    adv = rng.uniform(-1, 1, n)
    beta = 1.7
    z_post = posterior_logits(np.log(prior), adv, beta)
    closed_form = prior * np.exp(beta * adv)
    closed_form /= closed_form.sum()
    assert np.allclose(softmax(z_post), closed_form, atol=1e-12)
    draws = 60_000
    counts = np.bincount([choose_action(z_post, rng) for _ in range(draws)], minlength=n)
    freq = counts / draws
    # 5 standard errors of a binomial proportion
    assert np.all(np.abs(freq - closed_form) <= 5 * np.sqrt(closed_form * (1 - closed_form) / draws) + 1e-3)


def test_beta_zero_leaves_prior_unchanged():
    rng = np.random.default_rng(3)
    prior = rng.dirichlet(np.ones(5))
    adv = rng.uniform(-1, 1, 5)
    assert np.allclose(softmax(posterior_logits(np.log(prior), adv, 0.0)), prior)


def test_temperature_scales_prior_logits():
    z = np.array([0.0, 1.0, 2.0])
    assert np.allclose(posterior_logits(z, np.zeros(3), 1.0, temperature=2.0), z / 2)


def test_greedy_takes_argmax_and_update_can_flip_it():
    z = np.log(np.array([0.7, 0.2, 0.1]))
    adv = np.array([-1.0, 1.0, 0.0])
    rng = np.random.default_rng(0)
    assert choose_action(posterior_logits(z, adv, 0.0), rng, greedy=True) == 0
    assert choose_action(posterior_logits(z, adv, 3.0), rng, greedy=True) == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        posterior_logits(np.zeros(2), np.zeros(3), 1.0)
    with pytest.raises(ValueError):
        posterior_logits(np.zeros(2), np.zeros(2), -1.0)
    with pytest.raises(ValueError):
        choose_action(np.zeros(0), np.random.default_rng(0))


def _objective(p_new: np.ndarray, prior: np.ndarray, adv: np.ndarray, beta: float) -> float:
    """E_{π'}[A] − (1/β)·KL(π'‖π) (paper §4.3, the objective Theorem 4.1 maximises)."""
    p_new = np.clip(p_new, 1e-300, None)
    return float(p_new @ adv - np.sum(p_new * (np.log(p_new) - np.log(prior))) / beta)


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_maximises_advantage_minus_kl_found_by_brute_force(seed):
    """The posterior is checked against an optimiser of the objective, not against the same formula:
    (1) mirror ascent on the objective from a random start converges to softmax(log π + βA);
    (2) no random distribution (Dirichlet draws, and small perturbations of the posterior) scores higher."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 9))
    prior = rng.dirichlet(np.full(n, 0.7))
    adv = rng.uniform(-1, 1, n)
    beta = float(rng.choice([0.3, 1.0, 3.0, 10.0]))
    closed = softmax(posterior_logits(np.log(prior), adv, beta))

    # (1) exponentiated-gradient (mirror) ascent on the simplex from a random start, using only the
    # objective's gradient dJ/dπ'_a = A_a − (log π'_a − log π_a + 1)/β
    p_new = rng.dirichlet(np.ones(n))
    step = 0.5 * beta
    for _ in range(200):
        grad = adv - (np.log(p_new) - np.log(prior) + 1.0) / beta
        p_new = softmax(np.log(p_new) + step * grad)
    assert np.allclose(p_new, closed, rtol=1e-9, atol=1e-12), (p_new, closed)

    # (2) brute force over the simplex
    best = _objective(closed, prior, adv, beta)
    for p_new in rng.dirichlet(np.full(n, 0.5), size=20_000):
        assert _objective(p_new, prior, adv, beta) <= best + 1e-12
    for _ in range(2_000):
        p_new = softmax(np.log(closed) + rng.normal(scale=1e-2, size=n))
        assert _objective(p_new, prior, adv, beta) <= best + 1e-12
