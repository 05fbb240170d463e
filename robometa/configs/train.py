"""The resolved configuration of a training run (what ``config.yaml`` holds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robometa.sim.ray_pool import RaySettings
    from robometa.tasks import TaskFamily

SAMPLERS = ("local", "ray")


@dataclass(frozen=True)
class TrainConfig:
    """Run-level settings plus the chosen algorithm's own frozen config."""

    algo: str = "maml-trpo"
    """Meta-learner, by registry name (``robometa.algos.algorithm_names()``)."""
    family: str = "cheetah-vel"
    """Task family, by name or gymnasium id."""
    family_options: dict[str, Any] = field(default_factory=dict)
    """Keyword options of the family (``robometa.tasks.family_options(family)`` lists
    them), e.g. ``family_options.observe_goal=true``; used wherever the run's family is
    built (training, ``evaluate``, ``replay``)."""
    seed: int = 0
    """Seeds the weights, the task stream and every sampler; same seed, same run (on CPU)."""
    device: str = "auto"
    """Where the policy and learner run: auto | cpu | cuda | cuda:N."""
    iterations: int = 100
    """Meta-iterations to train for."""
    eval_every: int = 10
    """Every this many iterations, measure adaptation on validation tasks (which choose
    ``checkpoints/best.pt``) and on held-out test tasks (for watching only); 0: never."""
    eval_tasks: int = 10
    """Tasks of each split per evaluation (drawn once from the family's val and test splits)."""
    eval_steps: int = 3
    """Adaptation steps (or episodes, for memory-based learners) of the evaluation curve."""
    split_seed: int = 0
    """Seed of the family's fixed train/test splits (kept apart from ``seed`` so that
    runs with different seeds are evaluated on the same held-out tasks)."""
    checkpoint_every: int = 1
    """Write ``checkpoints/latest.pt`` every this many iterations (and at the end)."""
    learner_threads: int = 1
    """Torch threads of the MAML learner (inner and outer loops) on a CPU; sampling
    always uses every core. 1 holds up when other jobs share the machine (2 threads
    were 4x slower there); on an idle 2-core machine 2 threads make the learner
    of a paper-size MAML-TRPO iteration 1.5x faster (10.1 s -> 6.6 s,
    ``scripts/bench_maml.py learner_threads=2``)."""
    log_video: bool = False
    """At every evaluation, adapt to the first held-out task and log a before|after
    video of it to TensorBoard (``video/test_task_0``; rendered offscreen)."""
    sampler: str = "local"
    """Where episodes are sampled: ``local`` (this process, the policy on ``device``) or
    ``ray`` (Ray workers, each running a CPU copy of the policy over its share of the
    envs; ``pip install 'robometa[ray]'``)."""
    sampler_chunks: int = 0
    """Chunks every sampling request is cut into, each with its own seeds; the episodes
    depend on it, never on how many workers run the chunks, so ``sampler: local`` with
    the chunks of a ``ray`` run reproduces that run in one process. 0: the sampler's
    default (local: 1, the whole batch; ray: one per worker, which ``robometa train``
    writes here when a run starts, so that a resume with other workers samples alike)."""
    ray_address: str | None = None
    """``sampler: ray``: the cluster to join, ``auto`` or ``HOST:PORT`` of its head
    (``ray start --head`` prints it); ``null``: start a local Ray runtime."""
    ray_workers: int = 0
    """``sampler: ray``: sampler workers; 0: as many as the runtime's CPUs hold."""
    ray_cpus_per_worker: float = 1.0
    """``sampler: ray``: CPUs each worker reserves (and steps MuJoCo with)."""
    ray_timeout_s: float = 120.0
    """``sampler: ray``: seconds to wait for a replacement when every worker was lost
    before the run stops after its last checkpoint (and for new workers to start, at
    least 60 s)."""
    algo_params: Any = field(default=None)
    """The algorithm's config dataclass (e.g. :class:`MAMLTRPOConfig`)."""

    @property
    def learner(self) -> str:
        """The learner's name in reports: ``algo``, with its variant where the algorithm
        has one (``context-mean``, ``rl2-lstm``; ``algo_params.variant()``). Runs of
        one learner pool under ``robometa evaluate --group-by algo``; different variants
        of one algorithm are different learners."""
        variant = getattr(self.algo_params, "variant", lambda: None)()
        return self.algo if variant is None else f"{self.algo}-{variant}"

    def build_family(self) -> TaskFamily:
        """The run's task family, built with its ``family_options``."""
        from robometa.tasks import make_family

        return make_family(self.family, **self.family_options)

    @property
    def sampler_backend(self) -> str:
        """The sampling backend the learner gets (:mod:`robometa.sampling.backends`):
        ``batch`` or ``ray``, with ``/sampler_chunks`` when that is set."""
        base = "ray" if self.sampler == "ray" else "batch"
        return f"{base}/{self.sampler_chunks}" if self.sampler_chunks else base

    @property
    def ray_settings(self) -> RaySettings | None:
        """Where the Ray workers run (``None`` for ``sampler: local``)."""
        from robometa.sim.ray_pool import RaySettings

        if self.sampler != "ray":
            return None
        return RaySettings(self.ray_address, self.ray_workers, self.ray_cpus_per_worker, self.ray_timeout_s)

    def validate(self) -> list[str]:
        """Problems with the values, one line each (empty when fine)."""
        out = []
        if self.iterations < 1:
            out.append(f"iterations must be >= 1, got {self.iterations}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                out.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learner_threads < 1:
            out.append(f"learner_threads must be >= 1, got {self.learner_threads}")
        if self.eval_tasks < 1 or self.eval_steps < 0:
            out.append("eval_tasks must be >= 1 and eval_steps >= 0")
        if self.sampler not in SAMPLERS:
            out.append(f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}")
        if self.sampler_chunks < 0:
            out.append(f"sampler_chunks must be >= 0, got {self.sampler_chunks}")
        if self.sampler == "ray":
            out += self.ray_settings.problems()
        if self.algo_params is not None and hasattr(self.algo_params, "validate"):
            out += self.algo_params.validate()
        return out
