"""Closed-loop sampling: one rollout loop (:func:`collect`) and the samplers shaped on it."""

from robometa.sampling.episode_batch import EpisodeBatch
from robometa.sampling.rollout import PreviousStep, Rollout, RolloutActor, collect
from robometa.sampling.sampler import Actor, Sampler

__all__ = ["Actor", "EpisodeBatch", "PreviousStep", "Rollout", "RolloutActor", "Sampler", "collect"]
