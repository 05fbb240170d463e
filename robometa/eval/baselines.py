"""Baselines measured on the same held-out tasks, budget and curve format.

* ``ppo-scratch``: stable-baselines3 PPO trained from scratch on each held-out task,
  through the gymnasium facade, with exactly the environment steps the meta-learner
  adapts with (``episodes_per_step * horizon`` per step); its policy is evaluated
  after each step's worth of training, so step k of its curve has seen as much of
  the task as step k of the meta-learner's.
* ``multitask``: the learner's own settings with meta-learning switched off, trained on
  its training tasks with as much experience (:func:`robometa.eval.evaluate.multitask_result`).
* ``expert``: the family's scripted expert, where it has one (an upper reference;
  it does not adapt, so its curve is flat by construction and sampled at step 0).

Results are cached in the run directory (``eval/cache/``) keyed by their settings,
so evaluating again does not recompute them.

:data:`BASELINES` declares every baseline with what it needs of the family and the
learner (:meth:`Baseline.why_not`), so ``evaluate`` asks rather than checks names.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robometa.algos.base import Algorithm
from robometa.runs import atomic_write_text
from robometa.sampling.rollout import PreviousStep, collect
from robometa.sim import Simulator, make_simulator
from robometa.tasks.base import Task, TaskFamily

log = logging.getLogger(__name__)


def _cache_path(cache_dir: Path, kind: str, settings: dict) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{kind}-{key}.json"


def cached(cache_dir: Path | None, kind: str, settings: dict, compute):
    """Load ``kind`` results for ``settings`` from the cache, or compute and store them."""
    if cache_dir is None:
        return compute()
    path = _cache_path(cache_dir, kind, settings)
    if path.is_file():
        data = json.loads(path.read_text())
        log.info("using cached %s baseline %s", kind, path)
        return {k: (None if v is None else np.asarray(v)) for k, v in data["results"].items()}
    results = compute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "settings": settings,
        "results": {k: (None if v is None else v.tolist()) for k, v in results.items()},
    }
    atomic_write_text(path, json.dumps(payload))
    return results


def run_episodes(
    family: TaskFamily,
    tasks: Sequence[Task],
    act: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    seeds: int | Sequence[int],
    horizon: int | None = None,
    backend: str = "batch",
) -> dict:
    """One episode per task, all in one simulator, actions from ``act(obs, state, params)``.

    ``act`` gets ``obs (B, obs_dim)``, the state rows ``(B, state_dim)`` and the task
    parameters ``(B, P)`` of all envs, and returns actions ``(B, act_dim)``; envs
    whose episode ended are no longer simulated. ``seeds``: an int (env i gets
    ``seeds + i``) or one seed per task. Returns ``returns (B,)``, ``success (B,)``
    (any step succeeded) and ``metrics``: the family's diagnostics at each env's
    last step.
    """
    sim = make_simulator(family, tasks, seeds, backend=backend)
    params = np.ascontiguousarray(family.task_params(tasks), dtype=np.float64)
    out = collect(sim, _FunctionActor(act, sim, params), family.horizon if horizon is None else horizon)
    return {"returns": out.episode_returns[:, 0], "success": out.success[:, 0], "metrics": out.final_metrics}


class _FunctionActor:
    """A plain ``act(obs, state, params)`` function as a memoryless rollout actor."""

    def __init__(self, act: Callable, sim: Simulator, params: np.ndarray):
        self.fn, self.sim, self.params = act, sim, params

    def initial_memory(self, num_envs: int) -> None:
        return None

    def act(self, obs: np.ndarray, memory: None, prev: PreviousStep) -> tuple[np.ndarray, None, None]:
        return self.fn(obs, self.sim.state, self.params), None, None


def run_policy_episodes(family: TaskFamily, task: Task, act, episodes: int, horizon: int, seed: int):
    """Mean return and success rate of ``episodes`` episodes of one task."""
    out = run_episodes(family, [task] * episodes, act, [seed * 1000 + i for i in range(episodes)], horizon)
    return float(out["returns"].mean()), float(out["success"].mean())


def minibatch_size(budget: int) -> int:
    """PPO's mini-batch size for a rollout of ``budget`` steps: about 64 per 1000 steps,
    moved to a divisor of ``budget`` so that every mini-batch is whole (SB3 warns about
    a truncated last mini-batch otherwise): the largest divisor down to half the target,
    else the smallest one above it."""
    target = min(64 * max(1, budget // 1000), budget)
    below = [d for d in range(target // 2 + 1, target + 1) if budget % d == 0]
    return max(below) if below else min(d for d in range(target, budget + 1) if budget % d == 0)


def ppo_from_scratch(
    family: TaskFamily,
    tasks: Sequence[Task],
    steps: int,
    episodes_per_step: int,
    horizon: int,
    seeds: Sequence[int],
    progress=None,
) -> dict[str, np.ndarray]:
    """SB3 PPO per task and seed; returns ``returns``/``success`` shaped (S, M, steps+1).

    ``progress(message)``, if given, hears of every (seed, task) as it starts.
    """
    import time

    import gymnasium as gym
    from stable_baselines3 import PPO

    from robometa.envs import MetaEnv

    S, M = len(seeds), len(tasks)
    returns = np.zeros((S, M, steps + 1))
    success = np.zeros((S, M, steps + 1))
    budget = episodes_per_step * horizon
    t0, runs = time.perf_counter(), S * M
    for si, seed in enumerate(seeds):
        for mi, task in enumerate(tasks):
            if progress is not None:
                done = si * M + mi
                eta = (
                    ""
                    if done == 0
                    else f", about {(time.perf_counter() - t0) / done * (runs - done):.0f} s left"
                )
                progress(f"PPO from scratch: seed {si + 1}/{S}, task {mi + 1}/{M}{eta}")
            env = gym.wrappers.TimeLimit(MetaEnv(family, task=task), max_episode_steps=horizon)
            # n_steps = one step's budget, so every PPO update uses exactly the data
            # the meta-learner's adaptation step gets.
            model = PPO(
                "MlpPolicy",
                env,
                n_steps=budget,
                batch_size=minibatch_size(budget),
                seed=int(seed),
                device="cpu",
                verbose=0,
            )

            def act(obs, state, params, model=model):
                return model.predict(obs, deterministic=False)[0]

            for k in range(steps + 1):
                if k > 0:
                    model.learn(total_timesteps=budget, reset_num_timesteps=False)
                returns[si, mi, k], success[si, mi, k] = run_policy_episodes(
                    family, task, act, episodes_per_step, horizon, seed * 7919 + k
                )
            env.close()
    return {"returns": returns, "success": success if family.has_success else None}


def scripted_expert(
    family: TaskFamily, tasks: Sequence[Task], steps: int, episodes: int, horizon: int, seeds: Sequence[int]
) -> dict[str, np.ndarray] | None:
    """The family's scripted expert at step 0, held flat over the curve; ``None`` if none."""
    act = expert_for(family)
    if act is None:
        return None
    S, M = len(seeds), len(tasks)
    returns = np.zeros((S, M, 1))
    success = np.zeros((S, M, 1))
    for si, seed in enumerate(seeds):
        for mi, task in enumerate(tasks):
            returns[si, mi, 0], success[si, mi, 0] = run_policy_episodes(
                family, task, act, episodes, horizon, seed
            )
    return {
        "returns": np.repeat(returns, steps + 1, axis=2),
        "success": np.repeat(success, steps + 1, axis=2) if family.has_success else None,
    }


def expert_for(family: TaskFamily):
    """``act(obs, state, params)`` of the family's scripted expert, or ``None``."""
    if not family.has_expert:
        return None
    return lambda obs, state, params: family.expert_action(state, params)


# ------------------------------------------------------------------ what each baseline needs


@dataclass(frozen=True)
class Baseline:
    """A baseline of ``robometa evaluate`` and what it needs to be measured.

    ``why_not(family, learner)`` is ``None`` when the baseline can be measured for the
    evaluated learner on the family, else one line saying why not (``evaluate``
    leaves it out with that reason).
    """

    name: str  # as given to --baselines
    description: str
    _why_not: Callable[[TaskFamily, Algorithm], str | None]

    def why_not(self, family: TaskFamily, learner: Algorithm) -> str | None:
        return self._why_not(family, learner)

    def supports(self, family: TaskFamily, learner: Algorithm) -> bool:
        return self._why_not(family, learner) is None


def _needs_multitask_setting(family: TaskFamily, learner: Algorithm) -> str | None:
    if learner.multitask_config() is not None:
        return None
    return (
        f"it trains {learner.name}'s policy without meta-learning and fine-tunes it as the learner adapts, "
        f"and {learner.name} has no setting without meta-learning; put a run of a gradient learner "
        "(maml-trpo, maml-ppo) first to compare with it"
    )


def _needs_expert(family: TaskFamily, learner: Algorithm) -> str | None:
    return (
        None if family.has_expert else f"{family.name} has no scripted expert (the manipulation families do)"
    )


def _always(family: TaskFamily, learner: Algorithm) -> str | None:
    return None


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("no-adapt", "the meta-trained policy before any experience of the task, held flat", _always),
        Baseline(
            "multitask",
            "one policy trained on the training tasks without meta-learning: fine-tuned like a gradient "
            "learner, or a memory learner's policy without its memory",
            _needs_multitask_setting,
        ),
        Baseline("ppo-scratch", "stable-baselines3 PPO from scratch on each task, same budget", _always),
        Baseline("expert", "the family's scripted expert (an upper reference)", _needs_expert),
    )
}
"""Every baseline, by its ``--baselines`` name, in the order reports list them."""
