"""Closed-loop sampling of episodes with a torch policy."""

from robometa.sampling.episode_batch import EpisodeBatch
from robometa.sampling.sampler import Actor, Sampler

__all__ = ["Actor", "EpisodeBatch", "Sampler"]
