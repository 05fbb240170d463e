"""The one rollout loop equals a plain env-by-env reference, bit for bit.

The reference below steps every env at every step (finished ones too), keeps its
bookkeeping in Python per env and restarts ended episodes one env at a time. The loop
must give exactly its numbers: per-step arrays, per-episode sums, success at any step,
recorded states (repeating an episode's last state after it ends) and blow-up counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from toy_problems import BlowsUpCheetah

from robometa.sampling.rollout import PreviousStep, collect
from robometa.sim import make_simulator
from robometa.tasks import make_family


class _Actor:
    """Deterministic, row-independent, with memory: a step counter and the last reward."""

    def __init__(self, obs_dim, act_dim, seed=0):
        self.W = np.random.default_rng(seed).normal(0.0, 1.0, (obs_dim + 2, act_dim))

    def initial_memory(self, num_envs):
        return np.zeros(num_envs)

    def act(self, obs, memory, prev: PreviousStep):
        x = np.concatenate([obs, np.sin(memory)[:, None], prev.reward[:, None] * (1 - prev.done[:, None])], 1)
        return 1.5 * np.tanh(x @ self.W), -np.abs(x).sum(1), memory + 1


def _reference(sim, actor, T, K):
    B, L = sim.spec.num_envs, K * T
    out = {
        "obs": np.zeros((L, B, sim.spec.obs_dim), np.float32),
        "actions": np.zeros((L, B, sim.spec.act_dim), np.float32),
        "rewards": np.zeros((L, B), np.float32),
        "log_probs": np.zeros((L, B), np.float32),
        "masks": np.zeros((L, B), np.float32),
        "episode": np.full((L, B), K - 1),
        "episode_ends": np.zeros((L, B), np.float32),
        "terminated": np.zeros((L, B), np.float32),
        "episode_returns": np.zeros((B, K)),
        "episode_lengths": np.zeros((B, K), np.int64),
        "success": np.zeros((B, K), bool),
        "final_obs": np.zeros((B, K, sim.spec.obs_dim), np.float32),
        "states": np.zeros((B, K, T + 1, sim.spec.state_dim)),
    }
    terms: dict[str, np.ndarray] = {}
    obs = sim.reset()
    for b in range(B):
        out["states"][b, 0, 0] = sim.state[b]
    memory = actor.initial_memory(B)
    prev = PreviousStep(
        np.zeros((B, sim.spec.act_dim), np.float32), np.zeros(B, np.float32), np.zeros(B, np.float32)
    )
    episode, t, instabilities = [0] * B, [0] * B, 0
    for s in range(L):
        if min(episode) == K:
            break
        action, logp, memory = actor.act(obs, memory, prev)
        r = sim.step(action)
        next_obs = r.obs.copy()
        for b in range(B):
            k = episode[b]
            if k == K:
                continue
            out["obs"][s, b], out["actions"][s, b], out["log_probs"][s, b] = obs[b], action[b], logp[b]
            out["rewards"][s, b], out["masks"][s, b], out["episode"][s, b] = r.reward[b], 1.0, k
            instabilities += int(r.unstable[b])
            out["episode_returns"][b, k] += r.reward[b]
            for name, v in r.terms.items():
                terms.setdefault(name, np.zeros((B, K)))[b, k] += v[b]
            out["success"][b, k] |= r.success[b]
            t[b] += 1
            out["states"][b, k, t[b]] = sim.state[b]
            if r.terminated[b] or t[b] == T:
                out["episode_ends"][s, b], out["terminated"][s, b] = 1.0, float(r.terminated[b])
                out["episode_lengths"][b, k] = t[b]
                out["states"][b, k, t[b] + 1 :] = sim.state[b]
                if not r.terminated[b]:
                    out["final_obs"][b, k] = r.obs[b]
                episode[b] += 1
                if episode[b] < K:
                    one = np.arange(B) == b
                    next_obs[b] = sim.reset(one)[b]
                    out["states"][b, k + 1, 0] = sim.state[b]
                    t[b] = 0
        obs = next_obs
        prev = PreviousStep(out["actions"][s], out["rewards"][s], out["episode_ends"][s])
    return out, terms, instabilities


@pytest.mark.parametrize(
    ("family", "T", "K", "early", "blow_ups"),
    [
        (make_family("ant-dir"), 40, 2, True, False),
        (BlowsUpCheetah(), 30, 2, True, True),
        (make_family("cheetah-vel"), 8, 1, False, False),
    ],
    ids=["ant-dir-trials-early-terminations", "trials-with-blow-ups", "cheetah-vel-episodes"],
)
def test_the_loop_equals_a_plain_reference(family, T, K, early, blow_ups):
    tasks = family.split_tasks("train", n=3)
    tasks = [t for t in tasks for _ in range(2)]
    seeds = [11, 12, 13, 14, 15, 16]
    loop_sim, ref_sim = make_simulator(family, tasks, seeds), make_simulator(family, tasks, seeds)
    spec = loop_sim.spec
    got = collect(loop_sim, _Actor(spec.obs_dim, spec.act_dim), T, K, record_states=True)
    want, terms, instabilities = _reference(ref_sim, _Actor(spec.obs_dim, spec.act_dim), T, K)
    for name, value in want.items():
        np.testing.assert_array_equal(getattr(got, name), value, err_msg=name, strict=True)
    assert got.reward_terms.keys() == terms.keys()
    for name, value in terms.items():
        np.testing.assert_array_equal(got.reward_terms[name], value, err_msg=name)
    assert got.instabilities == instabilities == loop_sim.instabilities and (instabilities > 0) == blow_ups
    assert (got.episode_lengths.min() < T) == early
