"""Sampling throughput, side by side in one process: robometa vs the usual ways.

For one family and one 2x100 tanh Gaussian policy (the default ``GaussianMLPPolicy``), measures
env-steps/s of

  (a) open-loop ``mujoco.rollout`` of the same models (no policy), replaying a sample
      of robometa's sampler (its initial states and actions): the ceiling;
  (a') the same replay, one ``rollout`` call per control step as the simulator calls
      it (envs whose episode ended no longer stepped), no policy or bookkeeping in
      between: the bound for any closed-loop sampler that steps through ``rollout``;
  (b) robometa's Sampler, closed loop (one policy forward per control step), plain:
      the policy and the physics of the whole batch take turns (``pipeline=False``);
  (b') the same Sampler pipelined: the physics of one half of the batch runs on a
      worker thread while the policy of the other half runs (``pipeline=True``;
      the same episodes bit for bit; by default a sampler with two MuJoCo threads or
      more times (b) and (b') on its own requests and keeps the faster);
  (c) gymnasium ``SyncVectorEnv`` of the robometa facade env, closed loop;
  (d) gymnasium ``AsyncVectorEnv`` of the facade env, closed loop;
  (e) EnvPool ``HalfCheetah-v5`` / ``Ant-v5`` (without contact forces, so it observes
      what robometa's ant observes), closed loop, where envpool is installed and the
      family uses that robot (optional);

prints a table with ratios and writes JSON. Beside the table, where the plain loop's time
goes: (b) run once more per round with a timer around each phase of its control step
(:func:`phase_split`: the actor call, staging, the physics, the step's results,
resets, the loop's bookkeeping), in milliseconds per control step, next to (a')'s
milliseconds per ``rollout`` call. Every closed-loop contender gets the
same policy and the same torch thread setting (1 thread, which is what helps torch
and the simulator share 2 cores). The contenders run in ``--repeats`` interleaved
rounds (each round in a rotated order) and the best round of each counts, so the
ratios of one run hold on a machine that other jobs share; the JSON also keeps every
round, the process CPU time per env-step and the load average.

    python scripts/bench_sampler.py                       # cheetah-vel
    python scripts/bench_sampler.py --family cheetah-dir --out bench.json
    python scripts/bench_sampler.py --family all          # every registered family
    python scripts/bench_sampler.py --family cheetah-terrain --family-kwargs '{"height_scan": true}'

``--sampler ray`` compares, on the same requests (M tasks x N episodes, each task with
its own adapted weights, as MAML's post-adaptation sampling has them):

  (b) the local Sampler (one chunk); (b') the local Sampler cut into as many chunks
      as Ray's default gives each worker count (``batch/W``: what chunking alone costs);
  (f) the ``ray`` backend with each of ``--ray-workers`` workers (the policy runs on
      the workers), with its overhead per request: broadcast (serializing the actor
      and putting it in the object store), the round trip beyond the slowest worker's
      compute (scheduling, argument and result transfer), and the gather (putting the
      columns in order);
  (g) the ``ray-step`` backend (the policy stays here; every control step is a round
      trip to the workers), with as many workers as the largest of (f).

    python scripts/bench_sampler.py --sampler ray --ray-workers 1,2 --out bench_ray.json
    python scripts/bench_sampler.py --sampler ray --tasks 40 --episodes 20   # MAML paper's request
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import torch

import robometa  # noqa: F401  (registers the gymnasium ids)
from robometa.errors import RobometaError
from robometa.policies import GaussianMLPPolicy
from robometa.sampling import Sampler, chunks
from robometa.sim import batch_sim
from robometa.sim.batch_sim import default_nthread, rollout_pool
from robometa.tasks import family_names, make_family

# EnvPool's ids for robometa's robots, and the options that make its observation robometa's.
ENVPOOL_IDS = {"cheetah": ("HalfCheetah-v5", {}), "ant": ("Ant-v5", {"use_contact_force": False})}

# (env-steps, wall seconds, process CPU seconds) of one timed run
Timing = tuple[int, float, float]


def _cpu_s() -> float:
    """CPU seconds of this process, every thread (MuJoCo's and torch's included)."""
    t = os.times()
    return t.user + t.system


def _timed(run: Callable[[], int]) -> Timing:
    c0, t0 = _cpu_s(), time.perf_counter()
    steps = run()
    return steps, time.perf_counter() - t0, _cpu_s() - c0


def recorded_work(family, tasks, episodes: int, horizon: int, policy, seed: int):
    """A closed-loop sample of ``episodes`` envs per task as open-loop inputs: the models
    ``[B]``, initial states ``(B, nstate)`` and controls ``(B, horizon * frame_skip, nu)``
    (each action clipped as the simulator clips it, held for ``frame_skip`` physics
    steps, zero after an early end), and the sample itself (with its recorded states)."""
    recorder = Sampler(family, device="cpu", seed=seed + 1)  # a stream of its own
    batch = recorder.sample(policy, tasks, episodes, horizon=horizon, record_states=True)
    models = [family.model(t) for t in tasks for _ in range(episodes)]
    B, lay = len(models), family.layout
    state0 = np.ascontiguousarray(batch.states[:, :, 0].reshape(B, lay.nstate).double().numpy())
    lo, hi = models[0].actuator_ctrlrange.T
    actions = np.clip(batch.actions.reshape(B, horizon, lay.nu).double().numpy(), lo, hi)
    actions[~batch.masks.reshape(B, horizon).bool().numpy()] = 0.0  # after an early end
    ctrl = np.ascontiguousarray(np.repeat(actions, family.frame_skip, axis=1))
    return models, state0, ctrl, batch


def open_loop(family, tasks, episodes: int, horizon: int, policy, seed: int) -> Callable[[], Timing]:
    """(a) the ceiling: one open-loop ``rollout`` call over all envs and the whole horizon,
    replaying a closed-loop sample of the same envs with no policy in the loop.

    The replayed work is the sampler's own: its initial states (the family's resets,
    objects placed and reset noise drawn, as the sampler draws them) and its actions,
    clipped to the control range as the simulator clips them. Envs whose episode ended
    early (termination) keep stepping with zero controls to the horizon; throughput is
    per simulated step either way. (Starting from ``mj_resetData`` states and random
    controls instead, as this benchmark once did, simulates another scene: on push the
    object starts at the world origin, inside other geometry, 13-28 contacts against the
    reset state's 0-4.)
    """
    models, state0, ctrl, _ = recorded_work(family, tasks, episodes, horizon, policy, seed)
    B, lay, nstep = len(models), family.layout, ctrl.shape[1]
    nthread = default_nthread()
    pool = rollout_pool(nthread)
    datas = [mujoco.MjData(models[0]) for _ in range(nthread)]
    state = np.empty((B, nstep, lay.nstate))
    sens = np.empty((B, nstep, lay.nsensordata))

    def run() -> int:
        pool.rollout(models, datas, state0, ctrl, nstep=nstep, state=state, sensordata=sens, skip_checks=True)
        return B * horizon

    return lambda: _timed(run)


def replay_per_step(family, models, state0, ctrl, lengths, pool, datas) -> tuple[int, np.ndarray]:
    """Step ``models`` from ``state0 (B, nstate)`` through ``ctrl (B, T * frame_skip, nu)``
    one control step per ``rollout`` call, as :class:`~robometa.sim.BatchSim` calls it
    (the sensor step, no warm start carried over), env ``b`` for ``lengths[b]`` steps.
    Returns the steps simulated and every env's last state ``(B, nstate)``."""
    B, lay, fs = len(models), family.layout, family.frame_skip
    nstep = fs + (1 if lay.nsensordata else 0)
    state = np.empty((B, nstep, lay.nstate))
    sens = np.empty((B, nstep, lay.nsensordata))
    ctrl_step = np.zeros((B, nstep, lay.nu))
    warm = np.zeros((B, lay.nv))
    cur, steps = state0.copy(), 0
    for s in range(ctrl.shape[1] // fs):
        live = np.flatnonzero(lengths > s)
        n = len(live)
        if n == 0:
            break
        ctrl_step[:n, :fs] = ctrl[live, s * fs : (s + 1) * fs]
        pool.rollout(
            [models[i] for i in live],
            datas,
            np.ascontiguousarray(cur[live]),
            ctrl_step[:n],
            nstep=nstep,
            initial_warmstart=warm[:n],
            state=state[:n],
            sensordata=sens[:n],
            skip_checks=True,
        )
        cur[live] = state[:n, fs - 1]
        steps += n
    return steps, cur


def open_loop_per_step(family, tasks, episodes: int, horizon: int, policy, seed: int) -> Callable[[], Timing]:
    """(a') the closed-loop bound: the same replay as (a), but one ``rollout`` call per
    control step, as robometa's simulator calls it (each call from the states the last
    one left, no solver warm start carried over, envs whose episode ended no longer
    stepped), with no policy and no bookkeeping in between (:func:`replay_per_step`).
    What a closed-loop sampler that steps through ``rollout`` can reach at best;
    throughput counts the steps simulated."""
    models, state0, ctrl, batch = recorded_work(family, tasks, episodes, horizon, policy, seed)
    lengths = batch.masks.reshape(len(models), horizon).sum(1).numpy().astype(int)
    nthread = default_nthread()
    pool = rollout_pool(nthread)
    datas = [mujoco.MjData(models[0]) for _ in range(nthread)]

    def run() -> Timing:
        return _timed(lambda: replay_per_step(family, models, state0, ctrl, lengths, pool, datas)[0])

    run.calls = int(lengths.max())  # type: ignore[attr-defined]  # rollout calls per replay
    return run


def robometa_sampler(
    family, tasks, episodes: int, horizon: int, policy, seed: int, pipeline: bool, parts: list
) -> Callable[[], Timing]:
    """(b)/(b') the Sampler, closed loop, plain or pipelined; ``parts`` collects the
    part sizes of every pipelined request (empty: the batch was never cut)."""
    sampler = Sampler(family, device="cpu", seed=seed, pipeline=pipeline)
    sampler.sample(policy, tasks[:1], 1, horizon=2)  # warm up the pool and torch

    def run() -> int:
        real = chunks.collect_parts

        def spy(loop_parts, *a, **kw):
            parts.append([sim.spec.num_envs for sim, _ in loop_parts])
            return real(loop_parts, *a, **kw)

        chunks.collect_parts = spy  # only to report the cut
        try:
            return sampler.sample(policy, tasks, episodes, horizon=horizon).env_steps
        finally:
            chunks.collect_parts = real

    return lambda: _timed(run)


# The plain loop's control step, phase by phase: the method each phase's timer wraps.
PHASES = {
    "actor": (chunks.EpisodeActor, "act"),  # observation -> torch -> policy -> actions (numpy)
    "stage": (batch_sim.BatchSim, "begin_step"),  # clip the actions, copy the rows in
    "physics": (batch_sim.PendingStep, "run"),  # the native rollout calls
    "results": (batch_sim.BatchSim, "end_step"),  # rows out, observation / reward / termination
    "resets": (batch_sim.BatchSim, "reset"),  # initial states of new episodes
}


@contextlib.contextmanager
def _phase_timers(seconds: dict[str, float], calls: dict[str, int]) -> Iterator[None]:
    """While open, every method of :data:`PHASES` adds its wall time to ``seconds[phase]``
    and counts its calls in ``calls[phase]`` (the classes are restored on exit)."""
    saved = []
    for phase, (cls, name) in PHASES.items():
        real = cls.__dict__[name]
        saved.append((cls, name, real))

        def timed(*a, _real=real, _phase=phase, **kw):
            t0 = time.perf_counter()
            try:
                return _real(*a, **kw)
            finally:
                seconds[_phase] += time.perf_counter() - t0
                calls[_phase] += 1

        setattr(cls, name, timed)
    try:
        yield
    finally:
        for cls, name, real in saved:
            setattr(cls, name, real)


def phase_split(family, tasks, episodes: int, horizon: int, policy, seed: int) -> Callable[[], dict]:
    """(b) once more, with a timer around every phase of its control step: returns a run
    that gives ``{"control_steps", "env_steps", "wall_s", "ms_per_control_step": {phase:
    ms}}``, where ``bookkeeping`` is the rest of the loop's wall time (stores, episode
    sums, the sampler's request handling). The timers cost a few microseconds per step,
    so this run is not one of the timed contenders."""
    sampler = Sampler(family, device="cpu", seed=seed, pipeline=False)
    sampler.sample(policy, tasks[:1], 1, horizon=2)

    def run() -> dict:
        seconds = dict.fromkeys(PHASES, 0.0)
        calls = dict.fromkeys(PHASES, 0)
        with _phase_timers(seconds, calls):
            t0 = time.perf_counter()
            steps = sampler.sample(policy, tasks, episodes, horizon=horizon).env_steps
            wall = time.perf_counter() - t0
        n = max(1, calls["physics"])
        ms = {k: 1e3 * v / n for k, v in seconds.items()}
        ms["bookkeeping"] = 1e3 * wall / n - sum(ms.values())
        return {"control_steps": n, "env_steps": steps, "wall_s": wall, "ms_per_control_step": ms}

    return run


def closed_loop_vector_env(venv, policy, steps: int, seed: int | None) -> Callable[[], Timing]:
    """(c)/(d)/(e) a gymnasium-style vector env stepped with the same policy.

    ``seed=None`` for EnvPool, which takes its seed at construction.
    """

    def run() -> int:
        obs, _ = venv.reset() if seed is None else venv.reset(seed=seed)
        n = obs.shape[0]
        gen = torch.Generator().manual_seed(seed or 0)
        iters = max(1, steps // n)
        for _ in range(iters):
            obs_t = torch.as_tensor(obs, dtype=torch.float32).view(1, n, -1)
            action, _ = policy.act(obs_t, gen)
            obs, *_ = venv.step(action.view(n, -1).numpy().astype(np.float64))
        return n * iters

    return lambda: _timed(run)


def bench_family(name: str, args, policy_seed: int = 0) -> dict:
    family = make_family(name, **args.family_kwargs)
    tasks = family.split_tasks("train", seed=args.seed, n=args.tasks)
    if len(tasks) < args.tasks:  # families with few tasks (cheetah-dir): repeat them
        tasks = [tasks[i % len(tasks)] for i in range(args.tasks)]
    horizon = args.horizon or family.horizon
    torch.manual_seed(policy_seed)
    policy = GaussianMLPPolicy(family.obs_dim, family.layout.nu)
    envs_total = args.tasks * args.episodes
    load_before = os.getloadavg()
    torch.set_num_threads(1)
    parts: list[list[int]] = []
    contenders: dict[str, Callable[[], Timing]] = {
        "open_loop_rollout": open_loop(family, tasks, args.episodes, horizon, policy, args.seed),
        "open_loop_per_step": open_loop_per_step(family, tasks, args.episodes, horizon, policy, args.seed),
        "robometa_plain": robometa_sampler(
            family, tasks, args.episodes, horizon, policy, args.seed, False, []
        ),
        "robometa_pipelined": robometa_sampler(
            family, tasks, args.episodes, horizon, policy, args.seed, True, parts
        ),
    }
    closers = []

    def facade(i: int):
        return lambda: gym.make(family.env_id, task=tasks[i % len(tasks)], **args.family_kwargs)

    sync = gym.vector.SyncVectorEnv([facade(i) for i in range(args.vec_envs)])
    contenders["gym_sync_vector_env"] = closed_loop_vector_env(sync, policy, args.vec_steps, args.seed)
    closers.append(sync.close)
    if not args.skip_async:
        asyn = gym.vector.AsyncVectorEnv([facade(i) for i in range(args.vec_envs)])
        contenders["gym_async_vector_env"] = closed_loop_vector_env(asyn, policy, args.vec_steps, args.seed)
        closers.append(asyn.close)
    envpool_note = "family's robot has no EnvPool counterpart"
    robot = name.split("-")[0]
    if robot in ENVPOOL_IDS:
        try:
            import envpool
        except ImportError:
            envpool_note = "envpool not installed (pip install envpool)"
        else:
            env_id, options = ENVPOOL_IDS[robot]
            pool = envpool.make(
                env_id,
                env_type="gymnasium",
                num_envs=envs_total,
                batch_size=envs_total,
                num_threads=default_nthread(),
                seed=args.seed,
                **options,
            )
            closers.append(pool.close)
            # Only a like-for-like contender: the same observation size as robometa's.
            if pool.observation_space.shape[-1] == family.obs_dim:
                contenders["envpool"] = closed_loop_vector_env(pool, policy, envs_total * horizon, None)
                envpool_note = f"{env_id} {options or ''}".strip()
            else:
                envpool_note = (
                    f"{env_id} observes {pool.observation_space.shape[-1]} values, robometa {family.obs_dim}"
                )

    split = phase_split(family, tasks, args.episodes, horizon, policy, args.seed)
    splits: list[dict] = []
    rounds: dict[str, list[Timing]] = {k: [] for k in contenders}
    names = list(contenders)
    for r in range(args.repeats):  # interleaved, each round in a rotated order
        for k in names[r % len(names) :] + names[: r % len(names)]:
            rounds[k].append(contenders[k]())
        splits.append(split())
    for close in closers:
        close()
    best = {k: max(n / w for n, w, _ in v) for k, v in rounds.items()}
    ceiling, new = best["open_loop_rollout"], best["robometa_pipelined"]
    # (a')'s rollout calls: one per control step while any env of the replay is live.
    bound_calls = contenders["open_loop_per_step"].calls  # type: ignore[attr-defined]
    bound_wall = min(w for _, w, _ in rounds["open_loop_per_step"])
    return {
        "family": name,
        "family_kwargs": args.family_kwargs,
        "envs": envs_total,
        "horizon": horizon,
        "vec_envs": args.vec_envs,
        "repeats": args.repeats,
        "pipelined_parts": parts[0] if parts else None,
        "envpool": envpool_note,
        "steps_per_s": best,
        "ratio_to_ceiling": {k: v / ceiling for k, v in best.items()},
        "pipelined_ratio_to": {k: new / v for k, v in best.items() if k != "robometa_pipelined"},
        "cpu_us_per_env_step": {k: min(1e6 * c / n for n, _, c in v) for k, v in rounds.items()},
        "rounds_steps_per_s": {k: [n / w for n, w, _ in v] for k, v in rounds.items()},
        # The plain loop's phases in its fastest timed round, and (a')'s time per call.
        "plain_phases": min(splits, key=lambda x: x["wall_s"]) if splits else None,
        "bound_ms_per_rollout_call": 1e3 * bound_wall / max(1, bound_calls),
        "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
    }


def _per_task_actor(policy, M: int, seed: int):
    """The policy with its own weights for each of M tasks (what MAML samples with after adapting)."""
    from robometa.policies import BoundActor

    gen = torch.Generator().manual_seed(seed)
    params = {
        k: v.detach().expand(M, *v.shape) + 0.01 * torch.randn(M, *v.shape, generator=gen)
        for k, v in policy.named_parameters()
    }
    return BoundActor(policy, params, per_task=True)


def _timed_samples(sampler, actor, tasks, episodes: int, horizon: int, repeats: int, after=None) -> dict:
    """Best-of-``repeats`` env-steps/s of one request (after a small warm-up), and what
    ``after()`` reports of each timed request (averaged)."""
    sampler.sample(actor, tasks, 1, horizon=2)  # warm-up: threads, model caches, the workers' imports
    best, extra = 0.0, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        batch = sampler.sample(actor, tasks, episodes, horizon=horizon)
        best = max(best, batch.env_steps / (time.perf_counter() - t0))
        if after is not None:
            extra.append(after())
    out = {"steps_per_s": best}
    if extra:
        out.update({k: float(np.mean([e[k] for e in extra])) for k in extra[0]})
    return out


def bench_ray(name: str, args) -> dict:
    """``--sampler ray``: local sampler vs the ``ray`` backend (1, 2, ... workers) vs ``ray-step``."""
    from robometa.sampling import ray_sampler
    from robometa.sim.ray_pool import RaySettings

    family = make_family(name, **args.family_kwargs)
    tasks = family.split_tasks("train", seed=args.seed, n=args.tasks)
    if len(tasks) < args.tasks:
        tasks = [tasks[i % len(tasks)] for i in range(args.tasks)]
    horizon = args.horizon or family.horizon
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(family.obs_dim, family.layout.nu)
    actor = _per_task_actor(policy, len(tasks), args.seed)
    torch.set_num_threads(1)
    rows: dict[str, dict] = {}

    def run(label: str, backend: str, after=None) -> None:
        sampler = Sampler(family, device="cpu", seed=args.seed, backend=backend)
        rows[label] = _timed_samples(sampler, actor, tasks, args.episodes, horizon, args.repeats, after)
        print(f"  {label:<28}{rows[label]['steps_per_s']:>12,.0f} env-steps/s", flush=True)

    run("local", "batch")
    workers = [int(w) for w in args.ray_workers.split(",")]
    for w in workers:
        if w > 1:  # Ray's default cuts a request into one chunk per worker: what that costs alone
            run(f"local, {w} chunks", f"batch/{w}")
    for w in workers:
        t0 = time.perf_counter()
        runner = ray_sampler.start(RaySettings(args.ray_address, workers=w))
        rows.setdefault("startup_s", {})[str(w)] = time.perf_counter() - t0

        def overhead(runner=runner) -> dict:
            t = runner.timings
            return {
                "broadcast_s": t["broadcast"],
                "round_trip_minus_worker_s": t["round_trip"] - t["worker"],
                "gather_s": t["gather"],
                "worker_s": t["worker"],
            }

        run(f"ray, {w} worker{'s' if w > 1 else ''}", "ray", overhead)
    run(f"ray-step, {workers[-1]} workers", "ray-step")
    # Latency floors, from a request of one env per worker (compute next to nothing):
    # ray-step pays a round trip per control step, ray one per request.
    tiny = tasks[: workers[-1]]
    tiny_actor = _per_task_actor(policy, len(tiny), args.seed)
    for label, backend in (("ray_step_s_per_control_step", "ray-step"), ("ray_s_per_request", "ray")):
        sampler = Sampler(family, device="cpu", seed=args.seed, backend=backend)
        sampler.sample(tiny_actor, tiny, 1, horizon=2)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            sampler.sample(tiny_actor, tiny, 1, horizon=horizon)
        seconds = (time.perf_counter() - t0) / args.repeats
        rows.setdefault("latency", {})[label] = seconds / horizon if backend == "ray-step" else seconds
    ray_sampler.shutdown()
    local = rows["local"]["steps_per_s"]
    return {
        "family": name,
        "family_kwargs": args.family_kwargs,
        "tasks": len(tasks),
        "episodes": args.episodes,
        "horizon": horizon,
        "env_steps_per_request": len(tasks) * args.episodes * horizon,
        "ray_address": args.ray_address,
        "results": rows,
        "ratio_to_local": {k: v["steps_per_s"] / local for k, v in rows.items() if "steps_per_s" in v},
    }


def print_ray_table(report: dict) -> None:
    print(
        f"\n{report['family']}: {report['tasks']} tasks x {report['episodes']} episodes x {report['horizon']} "
        f"steps = {report['env_steps_per_request']:,} env-steps per request (per-task weights)"
    )
    head = (
        f"{'sampler':<26}{'env-steps/s':>12}{'vs local':>10}{'broadcast':>11}{'round trip':>12}{'gather':>9}"
    )
    print(head + "\n" + "-" * len(head))
    for k, v in report["results"].items():
        if "steps_per_s" not in v:
            continue
        cols = f"{k:<26}{v['steps_per_s']:>12,.0f}{v['steps_per_s'] / report['results']['local']['steps_per_s']:>9.2f}x"
        if "broadcast_s" in v:
            cols += (
                f"{1e3 * v['broadcast_s']:>9.1f}ms{1e3 * v['round_trip_minus_worker_s']:>10.1f}ms"
                f"{1e3 * v['gather_s']:>7.1f}ms"
            )
        print(cols)
    lat = report["results"]["latency"]
    print(
        "round trip: the request's wall time on Ray beyond the slowest worker's own compute; "
        "startup (s): " + ", ".join(f"{w} workers {s:.1f}" for w, s in report["results"]["startup_s"].items())
    )
    print(
        f"one env per worker: ray-step {1e3 * lat['ray_step_s_per_control_step']:.2f} ms per control step, "
        f"ray {1e3 * lat['ray_s_per_request']:.0f} ms per request of {report['horizon']} steps"
    )


def print_table(report: dict) -> None:
    options = f" {json.dumps(report['family_kwargs'])}" if report["family_kwargs"] else ""
    parts = report["pipelined_parts"]
    cut = f"pipelined as {' + '.join(map(str, parts))} envs" if parts else "not pipelined (no exact cut)"
    print(
        f"\n{report['family']}{options}: {report['envs']} envs x {report['horizon']} steps "
        f"(vector envs: {report['vec_envs']}); best of {report['repeats']} interleaved rounds; {cut}"
    )
    head = f"{'contender':<24}{'env-steps/s':>13}{'x ceiling':>11}{'pipelined / it':>16}{'CPU us/step':>13}"
    print(head + "\n" + "-" * len(head))
    for k, v in report["steps_per_s"].items():
        ratio = report["pipelined_ratio_to"].get(k)
        print(
            f"{k:<24}{v:>13,.0f}{report['ratio_to_ceiling'][k]:>10.2f}x"
            f"{'-' if ratio is None else f'{ratio:.2f}x':>16}{report['cpu_us_per_env_step'][k]:>13.1f}"
        )
    split = report["plain_phases"]
    if split:
        ms = split["ms_per_control_step"]
        print(
            f"robometa_plain per control step ({split['control_steps']} steps, timed): "
            + ", ".join(f"{k} {v:.3f}" for k, v in ms.items())
            + f" ms (sum {sum(ms.values()):.3f}); open_loop_per_step: "
            f"{report['bound_ms_per_rollout_call']:.3f} ms per rollout call"
        )
    load = report["load_average_1_5_15"]
    print(
        f"envpool: {report['envpool']}; load average (1 min) {load['before'][0]:.1f} -> {load['after'][0]:.1f}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="cheetah-vel", help="family name, or 'all'")
    p.add_argument("--tasks", type=int, default=20, help="tasks in the batch (M)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task (N); B = M*N envs")
    p.add_argument("--horizon", type=int, default=0, help="steps per episode (0: the family's)")
    p.add_argument("--vec-envs", type=int, default=8, help="envs in the gymnasium vector envs")
    p.add_argument("--vec-steps", type=int, default=8000, help="env-steps measured for vector envs")
    p.add_argument("--skip-async", action="store_true", help="skip AsyncVectorEnv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--family-kwargs",
        type=json.loads,
        default={},
        help="family options as a JSON object, e.g. '{\"height_scan\": true}'",
    )
    p.add_argument("--out", default="bench_sampler.json", help="JSON output path")
    p.add_argument(
        "--sampler",
        choices=("local", "ray"),
        default="local",
        help="local: robometa against other vector envs; ray: the local sampler against Ray workers",
    )
    p.add_argument("--ray-workers", default="1,2", help="--sampler ray: worker counts to measure, e.g. 1,2,4")
    p.add_argument(
        "--ray-address", default=None, help="--sampler ray: join this cluster (default: a local runtime)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed rounds of every contender, interleaved (--sampler ray: requests per sampler); best counts",
    )
    args = p.parse_args(argv)
    if not isinstance(args.family_kwargs, dict):
        p.error("--family-kwargs must be a JSON object")
    names = family_names() if args.family == "all" else [args.family]
    bench, table = (bench_ray, print_ray_table) if args.sampler == "ray" else (bench_family, print_table)
    try:
        reports = [bench(n, args) for n in names]
    except RobometaError as exc:
        print(f"bench_sampler: error: {exc}", file=sys.stderr)
        return 2
    for r in reports:
        table(r)
    meta = {
        "machine": platform.platform(),
        "cpus": default_nthread(),
        "nice": os.nice(0),
        "mujoco": mujoco.__version__,
        "torch": torch.__version__,
        "torch_threads_while_sampling": 1,
        "sampler": args.sampler,
    }
    if args.sampler == "ray":
        import ray

        meta["ray"] = ray.__version__
    Path(args.out).write_text(json.dumps({"meta": meta, "results": reports}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
