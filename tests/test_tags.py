"""Every TensorBoard tag a run or an evaluation writes is declared in robometa.tags,
each run lays out only the charts it fills, and each evaluation logs its held-out
curve as a picture."""

from __future__ import annotations

import re

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from robometa import tags
from robometa.configs import resolve_config
from robometa.eval.evaluate import evaluate
from robometa.trainer import Trainer

TINY = {
    "maml-trpo": ["meta_batch_size=2", "episodes_per_task=2", "hidden=[8]", "cg_iters=3"],
    "maml-ppo": ["meta_batch_size=2", "episodes_per_task=2", "hidden=[8]", "ppo_epochs=1"],
    "rl2": ["meta_batch_size=2", "trials_per_task=1", "hidden=8", "ppo_epochs=1", "minibatches=1"],
    "reptile": ["meta_batch_size=2", "episodes_per_task=2", "hidden=[8]", "inner_steps=1"],
    "meta-lstm": ["meta_batch_size=2", "episodes_per_task=2", "hidden=[8]", "cg_iters=3"],
    "context": ["meta_batch_size=2", "trials_per_task=1", "hidden=8", "ppo_epochs=1", "minibatches=1"]
    + ["aggregator=pog", "encoder_hidden=8"],
}
RUN = ["iterations=2", "eval_every=1", "eval_tasks=2", "eval_steps=1", "horizon=6", "device=cpu"]


def events(path) -> dict[str, list[str]]:
    acc = EventAccumulator(str(path), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny MAML-TRPO (reach: success), MAML-PPO (cheetah-vel) and RL² (reach) runs,
    and an evaluation of the first one with both default baselines."""
    root = tmp_path_factory.mktemp("tags")
    out = {}
    learners = (("maml-trpo", "reach"), ("maml-ppo", "cheetah-vel"), ("rl2", "reach"))
    others = (("reptile", "cheetah-vel"), ("meta-lstm", "cheetah-vel"), ("context", "cheetah-vel"))
    for algo, family in (*learners, *others):
        cfg = resolve_config(algo=algo, family=family, overrides=[*TINY[algo], *RUN])
        Trainer.create(cfg, root / algo).train()
        out[algo] = root / algo
    out["evaluate"], _ = evaluate([out["maml-trpo"]], n_tasks=1, seeds=[0], baselines=["no-adapt", "expert"])
    return out


def test_every_logged_tag_is_declared(runs):
    logged = set()
    for name, path in runs.items():
        acc = events(path)
        for kind in ("scalars", "images", "tensors"):
            undeclared = [t for t in acc.Tags()[kind] if not tags.declared(t, kind)]
            assert undeclared == [], (name, kind)
        logged |= set(acc.Tags()["scalars"])
    assert {"eval/maml-trpo/success/step", "eval/scripted expert/return/step"} <= logged
    # and nothing is declared that these runs never write (no stale names)
    stale = [p for p in tags.SCALARS if not any(re.fullmatch(p, t) for t in logged)]
    assert stale == []


def test_declared_names_are_strict():
    assert tags.declared("adapt_test/return/step_3") and tags.declared("adapt_val/success/episode_2")
    assert not tags.declared("adapt_test/return/episode_0")  # episodes count from 1
    assert not tags.declared("train/line_search_acepted")
    assert not tags.declared("adapt_test/curve") and tags.declared("adapt_test/curve", "images")


def _layout(path) -> dict[str, list[str]]:
    return {c.title: [ch.title for ch in c.chart] for c in _proto(path).category}


def _proto(path) -> layout_pb2.Layout:
    (event,) = events(path).Tensors("custom_scalars__config__")
    return layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])


def test_layout_has_one_chart_per_step_and_only_what_the_run_writes(runs):
    ppo = _layout(runs["maml-ppo"])  # cheetah-vel: no success
    assert ppo["adaptation on held-out test tasks (for watching)"] == [
        "return, step 0 (before adapting)",
        "return, step 1 (after 1 adaptation step)",
    ]
    assert not any("success" in chart for charts in ppo.values() for chart in charts)
    assert not any("line_search" in chart for charts in ppo.values() for chart in charts)  # TRPO only
    rl2 = _layout(runs["rl2"])  # reach: success
    assert rl2["adaptation on validation tasks (chooses best.pt)"] == [
        "return, episode 1 (episode 1: before any experience)",
        "return, episode 2 (episode 2: after 1 episode)",
        "success, episode 1 (episode 1: before any experience)",
        "success, episode 2 (episode 2: after 1 episode)",
    ]
    for algo in ("maml-trpo", "rl2"):  # every scalar the run logs is in exactly one chart, alone
        charts = [list(ch.multiline.tag) for c in _proto(runs[algo]).category for ch in c.chart]
        assert all(len(regexes) == 1 for regexes in charts)
        for tag in events(runs[algo]).Tags()["scalars"]:
            assert sum(bool(re.search(regexes[0], tag)) for regexes in charts) == 1, (algo, tag)


def test_the_held_out_curve_is_an_image_at_every_evaluation(runs):
    acc = events(runs["maml-trpo"])
    images = acc.Images(tags.CURVE_IMAGE)
    assert [i.step for i in images] == [0, 1]
    assert all(i.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert images[0].encoded_image_string != images[1].encoded_image_string  # the curve moved
