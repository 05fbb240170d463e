"""The README's examples of plugging in a learner and a family, run as written.

``LEARNER`` and ``FAMILY`` are the README's code blocks verbatim (README: "Your own
learner" / "Your own family"); each runs in a fresh interpreter, then drives the CLI
in-process, where the registration lives.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

LEARNER = """
from dataclasses import dataclass
from robometa.algos import AdaptationData, IterationResult, MetaLearner, register_algorithm
from robometa.policies import GaussianMLPPolicy
from robometa.sampling import Sampler

@dataclass(frozen=True)
class FloorConfig:  # a learner's settings; meta_batch_size and horizon are required
    meta_batch_size: int = 4
    episodes_per_task: int = 2
    horizon: int | None = None  # None: the family's
class Floor(MetaLearner):  # an untrained policy that never adapts: the floor under every curve
    name, curve_x, trained_steps = "floor", "adapt_step", 0
    def __init__(self, family, config, device="cpu", seed=0):
        self.family, self.config, self.horizon = family, config, config.horizon or family.horizon
        self.sampler = Sampler(family, device, seed=seed)
        self.policy = GaussianMLPPolicy(family.obs_dim, self.sampler.act_dim)
    def iteration(self, tasks):  # sample, adapt, meta-update: this one only samples
        batch = self.sampler.sample(self.policy, tasks, self.config.episodes_per_task, self.horizon)
        curve = AdaptationData.from_episodes(self.curve_x, [batch], self.family.has_success).curve("train")
        return IterationResult(curve, {}, batch.env_steps)
    def adaptation_data(self, tasks, steps, seed, record_states=False):  # steps 0..steps
        sampler, n = self.evaluation_sampler(seed), self.config.episodes_per_task
        batches = [sampler.sample(self.policy, tasks, n, self.horizon, record_states=record_states)
                   for _ in range(steps + 1)]  # no adaptation: the same policy at every step
        return AdaptationData.from_episodes(self.curve_x, batches, self.family.has_success)
    def state_dict(self):
        return {"policy": self.policy.state_dict(), "sampler": self.sampler.state_dict()}
    def load_state_dict(self, state):
        self.policy.load_state_dict(state["policy"]), self.sampler.load_state_dict(state["sampler"])
register_algorithm("floor", FloorConfig, Floor)
"""

FAMILY = '''
from robometa.tasks import register_family
from robometa.tasks.locomotion.cheetah import CheetahVel


class CheetahVelQuick(CheetahVel):
    """cheetah-vel in episodes of 100 steps, with a lighter control cost by default."""

    horizon = 100

    def __init__(self, ctrl_cost_weight: float = 0.02, reset_noise_scale: float = 0.1):
        super().__init__(ctrl_cost_weight=ctrl_cost_weight, reset_noise_scale=reset_noise_scale)


register_family("cheetah-vel-quick", "mypackage/CheetahVelQuick-v0", CheetahVelQuick)
'''

USE = """
import json, sys
from pathlib import Path
import gymnasium
from robometa.cli import main

run = Path(sys.argv[1]) / "run"
argv = ["train", "--algo", "floor", "--family", "cheetah-vel-quick", "--run-dir", str(run), "device=cpu"]
assert main([*argv, "iterations=2", "eval_every=1", "eval_tasks=2", "horizon=5"]) == 0
assert main(["train", "--algo", "floor", "--run-dir", str(run) + "-2", "family_options.nope=1"]) == 2
assert main(["evaluate", str(run), "--seeds", "0", "--adapt-steps", "1", "--name", "e"]) == 0
summary = json.loads((run / "eval" / "e" / "summary.json").read_text())
env = gymnasium.make("mypackage/CheetahVelQuick-v0", ctrl_cost_weight=0.1)
print(json.dumps({"methods": sorted(summary["methods"]), "horizon": env.spec.max_episode_steps}))
"""


def test_readme_examples_are_short_and_work(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for block in (LEARNER, FAMILY):
        assert len(block.strip().splitlines()) <= 30
        assert f"```python\n{block.lstrip(chr(10))}```" in readme  # the README shows exactly this
    script = tmp_path / "use.py"
    script.write_text(textwrap.dedent(LEARNER + FAMILY + USE))
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == '{"methods": ["floor", "no adaptation"], "horizon": 100}'
    # the second run is on the default family, cheetah-vel: one line naming its options
    assert "unknown option 'nope' for family cheetah-vel; valid: ctrl_cost_weight" in out.stderr
