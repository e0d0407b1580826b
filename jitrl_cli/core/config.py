"""The agent's configuration: every hyper-parameter of the JitRL policy, declared once.

:class:`AgentConfig` is built from command-line values by :meth:`AgentConfig.from_options` (validated by
:mod:`jitrl_cli.core.validation`) and serialised with :meth:`AgentConfig.to_params` (``dataclasses.asdict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

from jitrl_cli.core.advantage import AcrossWorlds, Exploration, QEstimate, UnseenQ
from jitrl_cli.core.backup import ReturnEstimate
from jitrl_cli.core.reflection import StepRewards
from jitrl_cli.core.validation import check_combinations, check_options, has_rule
from jitrl_cli.llm.scoring import Prior


#: The paper's settings for text games (`--paper`): its mean-return Q̂, its exploration bonus (α 5 with
#: probability λ 0.65), γ 0.5, β 3, k 10, and none of jitrl's additions (exact match, cycle avoidance).
PAPER_SETTINGS = {"beta": 3.0, "gamma": 0.5, "k": 10, "exploration": "paper", "alpha": 5.0, "bonus_prob": 0.65,
                  "q_estimate": "mean", "exact_match": False, "avoid_cycles": False, "fill_neighbours": True,
                  "unseen_q": "value", "replay_best": False, "go_explore": False, "backoff_states": False, "avoid_deaths": False,
                  "avoid_deaths_own": False, "avoid_deaths_horizon": 1, "safe_cycles": False,
                  "exact_all": False, "across_worlds": "max", "death_credit": 0, "cautious_after": 0}


def with_preset(policy: dict, preset: dict, given: set[str]) -> dict:
    """``policy`` (option name → value) with every option of ``preset`` that was not given on the command line."""
    return policy | {name: value for name, value in preset.items() if name in policy and name not in given}


def with_return(policy: dict, given: set[str]) -> dict:
    """``policy`` (option name → value) with one way back: ``--replay-best`` given without ``--go-explore`` turns off
    the games' default return, Go-Explore's (``go_explore``), instead of clashing with it. Both given on the command
    line still clash (:func:`jitrl_cli.core.validation.check_combinations`)."""
    if policy.get("replay_best") and "replay_best" in given and "go_explore" not in given:
        return policy | {"go_explore": False}
    return policy


#: The learning defaults of `jitrl web` and `jitrl eval --suite` (the game commands' are in
#: :mod:`jitrl_cli.commands.options`): the paper's γ, k, exploration and Q̂, and four of ours, each measured on
#: MiniWoB++ (bench/RESULTS.md): ``history`` 0 (the prompt shows the current page, not the earlier actions: the 270M
#: model copies its last action; "The prompt without the earlier actions"), ``backoff_actions`` and β 10 instead
#: of the paper's 3 (the 270M model's prior margins exceed the 2β a normalised advantage can move; "Back-off keys
#: and β 10"), ``unseen_q`` pessimistic (on a page whose known actions win, V̂ > 0, a button never tried starts
#: from Q̂ = 0 instead of V̂, so it no longer ties with the winner; "Where an untried action starts"), and
#: ``avoid_cycles`` (an action that led from a page straight back to a page already seen in the episode, such as
#: selecting the selected option again, gets Ã = −1 there; the page is told by a digest of its observation;
#: "Cycle avoidance on the web"). ``cautious_after`` 0: the games' caution (a web task that failed is not a death).
WEB_DEFAULTS = {"beta": 10.0, "gamma": 0.5, "k": 10, "exploration": "paper", "q_estimate": "mean", "prior": "sequence",
                "history": 0, "backoff_actions": True, "unseen_q": "pessimistic", "avoid_cycles": True, "cautious_after": 0}


@dataclass
class AgentConfig:
    """Hyper-parameters of the JitRL policy (defaults: paper §5 unless noted).

    Attributes:
        beta: β, strength of the advantage update (0 = static prior policy).
        gamma: γ, discount of the returns.
        k: neighbours retrieved per step.
        min_similarity: cosine similarity threshold for neighbours.
        temperature: T of the prior logits.
        greedy: argmax instead of sampling.
        learn: read and write memory; False is the static baseline (β forced to 0, memory untouched).
        exploration: bonus for unseen candidates (paper / ucb / puct / none); alpha α and bonus_prob λ.
        death_penalty: subtracted from the last reward when the game is lost.
        death_credit: H; where the game is lost, the last step's reward (points lost and ``death_penalty``, not a
            novelty bonus) enters the returns of the last H steps only
            (:func:`jitrl_cli.core.returns.discounted_returns`); 0: of every step (the paper).
        cautious_after: N ≥ 1: an episode starts cautious when the game's memory holds N episodes that ended in a death
            and no step that scored a point (above the score before it, or above the score the game starts with;
            :meth:`memories.store.MemoryStore.count_deaths`, ``has_scored``): it plays without the
            exploration bonus (``exploration`` none) and without cycle avoidance, so it keeps to the moves memory knows
            survive, until a point is scored; 0: never (every other option as given).
        max_steps: steps per episode.
        seed: seed of the action sampler (episode e uses seed + e).
        exact_match: retrieve steps taken in exactly the same world state (Jericho's
            world-state hash) before the ANN neighbours.
        exact_all: with ``exact_match``, every stored step of the world state, not only the k most recent
            (:func:`jitrl_cli.core.retrieval.retrieve_neighbourhood`).
        novelty: count-based exploration reward for reaching rarely visited world states
            (see :func:`jitrl_cli.core.returns.novelty_rewards`); 0 = game rewards only.
        q_estimate: Q̂(s,a) as the mean (paper eq. 5), the max or the expectimax of the neighbours' returns
            (:mod:`jitrl_cli.core.advantage`).
        across_worlds: with ``q_estimate`` expectimax, the best (``max``) or the step-weighted mean (``mean``) of the
            world states among an action's neighbours (:mod:`jitrl_cli.core.advantage`, "Across world states").
        step_rewards: rewards in the returns: the game's (env), the LLM evaluator's (llm) or
            their sum (both); see :mod:`jitrl_cli.core.reflection`.
        returns: the stored steps' returns as recorded (mc, paper eq. 3) or backed up over the
            remembered transitions between identical world states (backup; see :mod:`jitrl_cli.core.backup`).
        fill_neighbours: with ``exact_match``, ANN neighbours also fill the places left by the
            steps of the identical state (True), or only stand in for a state never visited (False).
        avoid_cycles: an action that earlier in the episode led from the same world state (at the
            same score) straight back into a state already visited gets the lowest advantage (see
            :func:`jitrl_cli.core.advantage.estimate_advantages`).
        safe_cycles: with ``avoid_cycles``, where every other candidate is a known loss (seen, Q̂ < 0), the
            actions that closed a cycle keep their own advantage (safe cycles, :mod:`jitrl_cli.core.advantage`).
        unseen_q: where the Q̂ of a candidate unseen among the neighbours starts: V̂ (``value``, the paper),
            max(V̂, 0) (``optimistic``), 0 (``zero``) or min(V̂, 0) (``pessimistic``); see :mod:`jitrl_cli.core.advantage`.
        prior: how the LLM's token logits become the prior over the candidates
            (:class:`jitrl_cli.llm.scoring.Prior`).
        replay_best: phased exploration (Go-Explore, Ecoffet et al. 2021; XTX, Tuyls et al. 2022): each
            episode first replays the best stored episode's path (loops erased) to a state drawn uniformly
            along it, up to its frontier (where it first reached its best score), as long as the world
            states match, then explores with the policy.
        go_explore: Go-Explore's return (Ecoffet et al. 2021): each episode first replays the shortest stored path
            to a cell of the archive (a situation, location and inventory, at a score) drawn with Go-Explore's
            count weights and a preference for high scores (:mod:`jitrl_cli.core.archive`), while the world
            states match, then explores with the policy. Not with ``replay_best``.
        abstract_actions: where the environment gives ``info["action_keys"]`` (web pages: the element's role
            and name with goal values masked, :func:`adapters.web_observation.action_key`), memory knows an
            action by its key, so what one instance or task taught applies to the next; else by its string.
        backoff_actions: with ``abstract_actions``, a candidate whose key no neighbour took is valued by the
            neighbours whose actions share its coarser key (the environment's ``backoff_key``, web:
            :func:`adapters.web_observation.backoff_key`; :func:`jitrl_cli.core.advantage.estimate_advantages`).
        backoff_states: with ``exact_match``, a candidate this world state's steps never took is valued by the
            steps of similar states (the ANN neighbours) that took it, and gets no exploration bonus
            (back-off states, :func:`jitrl_cli.core.advantage.estimate_advantages`).
        avoid_deaths: a candidate this world state's own steps never took, which ended an episode in a death from a
            state of the same situation (location and inventory, :func:`adapters.state_key.situation_key`), is valued
            by all of that situation's steps of it, whatever the neighbours say, and gets no exploration bonus
            (deadly actions, :func:`jitrl_cli.core.advantage.estimate_advantages`); text games only.
        avoid_deaths_own: ``avoid_deaths`` (implied) also for the candidates this world state's own steps took: they
            count among the situation's steps, as chance outcomes. For deaths that strike one time in several from
            the same world state (zork's grue in the dark): a world state whose own steps survived an action five
            times still values it by the death another state of its situation met (the hash holds no random seed).
        avoid_deaths_horizon: H, with ``avoid_deaths``: an action is deadly in a situation where a step of it there was
            among the last H steps of an episode that died (1: the step that died; more: also the move into a trap,
            such as zork's dark, from which every move met the grue; :func:`jitrl_cli.core.retrieval.situation_deaths`);
            with H > 1 a deadly action is valued by the mean return of the situation's steps of it (``deadly_mean``).
        prompt_inventory: the transcript shows what the player carries after every observation.
        history: the earlier actions (with the observations they led to) the transcript prompt shows before
            the current observation; None: all that fit the context, 0: none (:class:`jitrl_cli.llm.prompt.TranscriptPrompt`).
    """

    beta: float = 3.0
    gamma: float = 0.5
    k: int = 10
    min_similarity: float = 0.5
    temperature: float = 1.0
    greedy: bool = False
    learn: bool = True
    exploration: Exploration = Exploration.paper
    alpha: float = 1.0
    bonus_prob: float = 0.5
    death_penalty: float = 10.0
    death_credit: int = 0
    cautious_after: int = 0
    max_steps: int = 50
    seed: int = 0
    exact_match: bool = False
    exact_all: bool = False
    novelty: float = 0.0
    q_estimate: QEstimate = QEstimate.mean
    across_worlds: AcrossWorlds = AcrossWorlds.max
    step_rewards: StepRewards = StepRewards.env
    returns: ReturnEstimate = ReturnEstimate.mc
    fill_neighbours: bool = True
    avoid_cycles: bool = False
    safe_cycles: bool = False
    unseen_q: UnseenQ = UnseenQ.value
    prior: Prior = Prior.sequence
    replay_best: bool = False
    go_explore: bool = False
    abstract_actions: bool = True
    backoff_actions: bool = False
    backoff_states: bool = False
    avoid_deaths: bool = False
    avoid_deaths_own: bool = False
    avoid_deaths_horizon: int = 1
    prompt_inventory: bool = False
    history: int | None = None

    def effective_beta(self) -> float:
        """β actually applied (0 when learning is off)."""
        return self.beta if self.learn else 0.0

    @classmethod
    def from_options(cls, **values: Any) -> "AgentConfig":
        """Validate option values (field name → value; enum fields as their strings) and build the config.

        Fields not given keep their defaults. Used by every command that takes the learning options.

        Raises:
            UserError: one line naming the first invalid option (:func:`jitrl_cli.core.validation.check_options`), or
                the first option given without the one it needs (:func:`jitrl_cli.core.validation.check_combinations`).
            TypeError: a name that is no field (a programming error).
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise TypeError(f"AgentConfig has no field {', '.join(unknown)}")
        check_options(**{name: value for name, value in values.items() if has_rule(name)})
        check_combinations(**({f.name: f.default for f in fields(cls)} | values))
        return cls(**cls.typed(**values))

    @classmethod
    def typed(cls, **values: Any) -> dict[str, Any]:
        """Field values as the config holds them: an enum field's string becomes its enum member, the rest stay.

        Raises:
            KeyError: a name that is no field; ValueError: a string that is no member of the field's enum.
        """
        known = {f.name: f.default for f in fields(cls)}
        return {name: type(known[name])(value) if isinstance(known[name], Enum) else value for name, value in values.items()}

    def to_params(self) -> dict[str, Any]:
        """The config as stored with each episode and in ``run.json``: every field, enums as their values,
        and ``beta`` as applied (:meth:`effective_beta`)."""
        params = {name: value.value if isinstance(value, Enum) else value for name, value in asdict(self).items()}
        params["beta"] = self.effective_beta()
        return params
