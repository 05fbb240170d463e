"""Is one task of a family learnable at all? stable-baselines3 PPO from scratch on it.

A meta-learner that does not adapt on a family may be failing at meta-learning, or
at plain reinforcement learning: if PPO cannot learn a *single* task of the family
in many more env steps than the meta-learner spends per task, the family's control
problem (or its reward) is the obstacle, not adaptation. This script trains SB3 PPO
(its default MuJoCo-sized settings: 2048 steps per update, 10 epochs, minibatches of
64, Adam 3e-4; Schulman et al., 2017) from scratch on one task of a split, through
the family's gymnasium env at the family's horizon (or ``--horizon``), and every
``--every`` env steps measures the return and success rate of ``--episodes``
stochastic episodes on that task (the evaluation the ``ppo-scratch`` baseline of
``robometa evaluate`` uses):

    python scripts/single_task.py --family push --steps 500000
    python scripts/single_task.py --family ant-dir --task 3 --split test --steps 1000000 --out ant.json

For comparison, the scripted expert's success on the same task (manipulation
families) is printed first. Table + ``--out`` JSON; bad input exits with status 2
and one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from robometa.errors import RobometaError


def measure(
    family_name: str,
    split: str,
    index: int,
    steps: int,
    every: int,
    episodes: int,
    horizon: int | None,
    seed: int,
) -> dict[str, Any]:
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from robometa.envs import MetaEnv
    from robometa.eval.baselines import expert_for, run_policy_episodes
    from robometa.tasks import make_family

    family = make_family(family_name)
    family.check_split(split)
    size = family.split_size(split)
    if index >= size:
        raise RobometaError(
            f"--task {index}: the {split} split of {family_name} has {size} tasks (0..{size - 1})"
        )
    tasks = family.split_tasks(split, seed=0, n=index + 1)
    task = tasks[index]
    T = horizon or family.horizon
    rows: list[dict[str, Any]] = []
    expert = expert_for(family)
    expert_row = None
    if expert is not None:
        ret, succ = run_policy_episodes(family, task, expert, episodes, T, seed)
        expert_row = {"return": ret, "success": succ}

    env = gym.wrappers.TimeLimit(MetaEnv(family, task=task), max_episode_steps=T)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()

    def evaluate(at: int) -> None:
        def act(obs, state, params):
            return model.predict(obs, deterministic=False)[0]

        ret, succ = run_policy_episodes(family, task, act, episodes, T, seed + 1 + at)
        rows.append(
            {
                "env_steps": at,
                "return": ret,
                "success": succ if family.has_success else None,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(
            f"  {at:>9,} env steps: return {ret:8.1f}"
            + (f", success {succ:.2f}" if family.has_success else "")
        )

    class Every(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next = every

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                self.next += every
                evaluate(self.num_timesteps)
            return True

    evaluate(0)
    model.learn(total_timesteps=steps, callback=Every())
    env.close()
    return {
        "family": family_name,
        "split": split,
        "task_index": index,
        "task": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in vars(task).items()},
        "horizon": T,
        "episodes": episodes,
        "seed": seed,
        "expert": expert_row,
        "curve": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", required=True)
    ap.add_argument("--split", default="test", help="split the task comes from (default test)")
    ap.add_argument("--task", type=int, default=0, help="index of the task in the split (default 0)")
    ap.add_argument("--steps", type=int, default=500_000, help="env steps of PPO training")
    ap.add_argument("--every", type=int, default=50_000, help="env steps between measurements")
    ap.add_argument("--episodes", type=int, default=10, help="episodes per measurement")
    ap.add_argument("--horizon", type=int, default=None, help="episode length (default: the family's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    try:
        from robometa.tasks import family_names

        if args.family not in family_names():
            raise RobometaError(f"unknown family {args.family!r}; valid: {', '.join(family_names())}")
        for name in ("steps", "every", "episodes"):
            if getattr(args, name) < 1:
                raise RobometaError(f"--{name} must be >= 1, got {getattr(args, name)}")
        if args.task < 0 or (args.horizon is not None and args.horizon < 1):
            raise RobometaError("--task must be >= 0 and --horizon >= 1")
        print(
            f"SB3 PPO from scratch on {args.family} {args.split} task {args.task}, {args.steps:,} env steps"
        )
        result = measure(
            args.family, args.split, args.task, args.steps, args.every, args.episodes, args.horizon, args.seed
        )
    except RobometaError as exc:
        print(f"single_task: error: {exc}", file=sys.stderr)
        return 2
    if result["expert"] is not None:
        e = result["expert"]
        print(f"scripted expert on the same task: return {e['return']:.1f}, success {e['success']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
