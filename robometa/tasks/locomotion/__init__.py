"""Locomotion task families (HalfCheetah, Ant)."""
