"""Baselines measured on the same held-out tasks, budget and curve format.

* ``ppo-scratch``: stable-baselines3 PPO trained from scratch on each held-out task,
  through the gymnasium facade, with exactly the environment steps the meta-learner
  adapts with (``episodes_per_step * horizon`` per step); its policy is evaluated
  after each step's worth of training, so step k of its curve has seen as much of
  the task as step k of the meta-learner's.
* ``expert``: the family's scripted expert, where it has one (an upper reference;
  it does not adapt, so its curve is flat by construction and sampled at step 0).

Results are cached in the run directory (``eval/cache/``) keyed by their settings,
so evaluating again does not recompute them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robometa.runs import atomic_write_text
from robometa.sim import BatchSim
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


def run_episodes(family: TaskFamily, tasks: Sequence[Task], act, seeds, horizon: int | None = None) -> dict:
    """One episode per task in one BatchSim, actions from ``act(obs, state, params)``.

    ``seeds``: an int (env i gets ``seeds + i``) or one seed per task. Returns
    ``returns (B,)``, ``success (B,)`` (any step succeeded) and ``metrics``: the
    family's diagnostics at the last step.
    """
    sim = BatchSim(family, tasks, seeds=seeds)
    obs = sim.reset()
    alive = np.ones(sim.B, dtype=bool)
    ret = np.zeros(sim.B)
    success = np.zeros(sim.B, dtype=bool)
    metrics: dict = {}
    for _ in range(family.horizon if horizon is None else horizon):
        r = sim.step(act(obs, sim.state, sim.params))
        ret += np.where(alive, r.reward, 0.0)
        success |= alive & r.success
        alive &= ~r.terminated
        obs, metrics = r.obs, r.metrics
        if not alive.any():
            break
    return {"returns": ret, "success": success, "metrics": metrics}


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
) -> dict[str, np.ndarray]:
    """SB3 PPO per task and seed; returns ``returns``/``success`` shaped (S, M, steps+1)."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    from robometa.envs import MetaEnv

    S, M = len(seeds), len(tasks)
    returns = np.zeros((S, M, steps + 1))
    success = np.zeros((S, M, steps + 1))
    budget = episodes_per_step * horizon
    for si, seed in enumerate(seeds):
        for mi, task in enumerate(tasks):
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
    try:
        from robometa.tasks.manipulation.experts import expert_action
        from robometa.tasks.manipulation.families import ManipFamily
    except ImportError:
        return None
    if isinstance(family, ManipFamily):
        return lambda obs, state, params: expert_action(family, state, params)
    return None
