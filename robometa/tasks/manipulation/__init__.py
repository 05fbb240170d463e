"""Manipulation task families: a table-top arm, procedural objects, scripted experts."""
