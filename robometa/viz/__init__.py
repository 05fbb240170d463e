"""Seeing what robots do: offscreen frames, video files, the interactive viewer."""
