"""Sampling on Ray: the same runs as the local sampler, node losses survived, clear stops.

The ``ray`` tests share one simulated cluster on this machine (``ray.cluster_utils``):
a head without CPUs (the driver) and two 1-CPU nodes, so the two sampler workers sit
on different nodes; they run in file order and the later ones remove nodes. The CLI
checks at the end need no cluster (one needs no Ray at all).
"""

from __future__ import annotations

import logging
import time

import pytest
import torch

from robometa.cli import main
from robometa.configs import resolve_config
from robometa.policies import BoundActor, GaussianMLPPolicy
from robometa.sampling import Sampler, ray_sampler
from robometa.sim.ray_pool import RaySettings, WorkersLost
from robometa.tasks import make_family
from robometa.trainer import Trainer

# Node and actor deaths noticed within about a second (Ray's defaults take ~30 s).
FAST_HEALTH_CHECKS = {
    "health_check_period_ms": 200,
    "health_check_timeout_ms": 200,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 0,
}
TINY_MAML = [
    "meta_batch_size=2",
    "episodes_per_task=2",
    "horizon=10",
    "hidden=[8]",
    "cg_iters=3",
    "eval_every=2",
    "eval_tasks=2",
    "eval_steps=1",
    "device=cpu",
]


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS},
    )
    for _ in range(2):
        c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False, logging_level=logging.WARNING)
    yield c
    ray_sampler.shutdown()
    c.shutdown()


def _node_of(node_id: str, cluster) -> object:
    return next(n for n in cluster.worker_nodes if n.node_id == node_id)


def _checkpoint_tensors(run) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    out = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)

    walk("", ckpt["algo"])
    return out


@pytest.mark.ray
def test_a_maml_run_on_two_workers_equals_the_local_sampler_with_its_chunks(cluster, tmp_path):
    """`robometa train --sampler ray` on 2 workers (one chunk each, written to config.yaml)
    = ``sampler: local`` with 2 chunks, bit for bit, through training, evaluation and a
    resume on 1 worker."""
    local = resolve_config(algo="maml-trpo", overrides=[*TINY_MAML, "iterations=2", "sampler_chunks=2"])
    Trainer.create(local, tmp_path / "local").train()

    ray_flags = ["--sampler", "ray", "--ray-address", cluster.address, "--ray-workers", "2"]
    assert main(["train", *ray_flags, "--run-dir", str(tmp_path / "ray"), *TINY_MAML, "iterations=1"]) == 0
    assert "sampler_chunks: 2\n" in (tmp_path / "ray" / "config.yaml").read_text()
    Trainer.resume(tmp_path / "ray", {"iterations": 2, "ray_workers": 1}).train()  # fewer workers
    assert ray_sampler.runner().pool.size == 1

    want, got = _checkpoint_tensors(tmp_path / "local"), _checkpoint_tensors(tmp_path / "ray")
    assert want.keys() == got.keys() and len(want) > 4
    for k in want:
        assert torch.equal(want[k], got[k]), k
    # the evaluation at iteration 2 too (the 1-iteration attempt also evaluated at its end)
    last = [
        [r for r in (tmp_path / d / "curves.jsonl").read_text().splitlines() if '"iteration": 2' in r]
        for d in ("local", "ray")
    ]
    assert last[0] == last[1] and len(last[0]) == 2

    # one chunk on Ray is the plain local sampler
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=2)
    actor = BoundActor(GaussianMLPPolicy(fam.obs_dim, fam.layout.nu, (8,)))
    a = Sampler(fam, "cpu", seed=1).sample(actor, tasks, 2, horizon=10)
    b = Sampler(fam, "cpu", seed=1, backend="ray/1").sample(actor, tasks, 2, horizon=10)
    assert (
        torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions) and torch.equal(a.rewards, b.rewards)
    )


@pytest.mark.ray
def test_a_node_lost_mid_request_is_replaced_and_the_episodes_do_not_change(cluster, monkeypatch, caplog):
    import ray

    runner = ray_sampler.start(RaySettings(cluster.address, workers=2, timeout_s=30))
    assert runner.pool.live == 2
    nodes = ray.get([h.ping.remote() for h in runner.pool.live_handles()])
    assert len(set(nodes)) == 2  # one worker per node
    doomed = _node_of(nodes[1], cluster)

    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=4)
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu, (16,))
    params = {
        k: v.detach().expand(4, *v.shape) + 0.1 * torch.randn(4, *v.shape)
        for k, v in policy.named_parameters()
    }
    actor = BoundActor(policy, params, per_task=True)
    want = Sampler(fam, "cpu", seed=7, backend="batch/4").sample(
        actor, tasks, 3, horizon=60, record_states=True
    )

    wait = ray.wait
    removed = []

    def wait_after_losing_a_node(*args, **kwargs):  # the first wait comes right after dispatch
        if not removed:
            cluster.remove_node(doomed, allow_graceful=False)
            removed.append(doomed)
        return wait(*args, **kwargs)

    monkeypatch.setattr(ray, "wait", wait_after_losing_a_node)
    sampler = Sampler(fam, "cpu", seed=7, backend="ray/4")
    with caplog.at_level(logging.WARNING, logger="robometa.sim.ray_pool"):
        got = sampler.sample(actor, tasks, 3, horizon=60, record_states=True)
    assert removed and sampler.pop_metrics()["sim/worker_restarts"] == 1.0
    assert any("died" in r.getMessage() and "re-run" in r.getMessage() for r in caplog.records)
    for name in ("obs", "actions", "rewards", "log_probs", "masks", "states", "success"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert runner.pool.live == 1  # no room for the replacement: the survivor did the work


@pytest.mark.ray
def test_a_run_whose_workers_are_all_lost_stops_after_its_last_checkpoint(cluster, tmp_path):
    overrides = [
        *TINY_MAML,
        "iterations=3",
        "eval_every=0",
        "sampler=ray",
        f"ray_address={cluster.address}",
        "ray_workers=1",
        "ray_timeout_s=3",
    ]
    trainer = Trainer.create(resolve_config(algo="maml-trpo", overrides=overrides), tmp_path / "run")

    lost_at = []

    def lose_every_node(progress):
        if progress.iteration == 0:
            for node in list(cluster.worker_nodes):
                cluster.remove_node(node, allow_graceful=False)
            lost_at.append(time.monotonic())

    with pytest.raises(WorkersLost) as err:
        trainer.train(lose_every_node)
    assert time.monotonic() - lost_at[0] >= 3.0  # it waited for a replacement first
    message = str(err.value)
    assert "\n" not in message and "no Ray sampler worker is left" in message and "3 s" in message
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["iteration"] == 1  # the last checkpoint stands; nothing of iteration 2 was written
    assert (tmp_path / "run" / "config.yaml").is_file() and list(
        (tmp_path / "run").glob("events.out.tfevents.*")
    )


def test_sampler_ray_without_ray_installed_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` fails
    monkeypatch.setattr(ray_sampler, "_RUNNER", None)
    run = tmp_path / "run"
    assert main(["train", "--sampler", "ray", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'robometa[ray]'" in err
    assert not run.exists()


@pytest.mark.ray
def test_a_wrong_ray_address_is_one_line_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("ray")
    run = tmp_path / "run"
    assert main(["train", "--sampler", "ray", "--ray-address", "127.0.0.1:1", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach a Ray cluster at '127.0.0.1:1'" in err
    assert main(["train", "--sampler", "ray", "--ray-address", "head-node", "--run-dir", str(run)]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert not run.exists()


def test_actors_reach_the_workers_with_their_tensors_loaded_weights_only(monkeypatch):
    """What the workers get back is the learner's actor: same outputs, parameters still
    parameters, a tensor held twice still one object; the tensors load with
    ``torch.load(weights_only=True)`` (it is the only ``torch.load`` on the way)."""
    pytest.importorskip("ray")
    from robometa.algos import make_algorithm
    from robometa.configs import resolve_config as rc

    fam = make_family("cheetah-vel")
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu, (8,))
    per_task = {n: p.detach().unsqueeze(0).repeat(2, *[1] * p.dim()) for n, p in policy.named_parameters()}
    per_task["alias"] = per_task["log_std"]  # the same tensor twice
    rl2 = make_algorithm(
        "rl2", fam, rc(algo="rl2", preset="quick", overrides=["hidden=8"]).algo_params, "cpu", 0
    )
    loads = []
    real_load = torch.load
    monkeypatch.setattr(
        torch, "load", lambda *a, **k: loads.append(k.get("weights_only")) or real_load(*a, **k)
    )
    obs = torch.randn(2, 3, fam.obs_dim)
    for actor in (BoundActor(policy, per_task, per_task=True), rl2.actor):
        back = ray_sampler.load_actor(ray_sampler.actor_bytes(actor))
        if isinstance(actor, BoundActor):
            mean = actor.policy.mean_log_std(obs, actor.params, per_task=True)[0]
            assert torch.equal(back.policy.mean_log_std(obs, back.params, per_task=True)[0], mean)
            assert back.params["alias"] is back.params["log_std"]
            params = list(back.policy.parameters())
        else:
            inputs = torch.randn(4, actor.policy.input_dim)
            assert torch.equal(back.policy.step(inputs, back.policy.initial_state(4))[0],
                               actor.policy.step(inputs, actor.policy.initial_state(4))[0])  # fmt: skip
            params = list(back.policy.parameters())
            o, a, r = torch.randn(4, fam.obs_dim), torch.randn(4, fam.layout.nu), torch.randn(4)
            actor.obs_norm.update(
                torch.randn(5, 7, fam.obs_dim) * 3, torch.ones(5, 7)
            )  # non-trivial statistics
            back = ray_sampler.load_actor(ray_sampler.actor_bytes(actor))
            assert torch.equal(
                back.features(o, a, r, torch.zeros(4)), actor.features(o, a, r, torch.zeros(4))
            )
        assert params and all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in params)
    # a parameter held twice comes back as one parameter
    back_policy, back_log_std = ray_sampler.load_actor(ray_sampler.actor_bytes((policy, policy.log_std)))
    assert back_log_std is back_policy.log_std
    assert loads == [True, True, True, True]
