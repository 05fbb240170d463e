"""Scripted experts for the manipulation families: a few lines of geometry each.

Like Meta-World's scripted policies, an expert is a stateless function of the
current state and the task parameters (it knows the goal and the object's size,
which the learner's observation hides). It proves every task solvable and is the
upper reference in evaluation (``scripts/manipulation_experts.py`` measures it
against a random policy). Each expert picks a TCP target point and moves
towards it with a saturated proportional law; the gripper command is +1 (close)
or -1 (open).

- reach: go to the goal.
- push: hover behind the object on the line from the goal through it, descend to
  table height with the gripper closed (the pads form a paddle), push along the
  line, correcting sideways; lift and re-approach when the object drifts off it.
- pick-place: hover over the object with the gripper open, descend to its centre,
  close, and once the fingers hold it carry it to the goal.
"""

from __future__ import annotations

import numpy as np

from robometa.tasks.manipulation import robot
from robometa.tasks.manipulation.families import KINDS, ManipFamily

GAIN = 20.0  # (m/s) per m of TCP error; saturates at 1 m/s beyond 5 cm
PUSH_HEIGHT = 0.021  # m, TCP height while pushing (pads span 0.001-0.041 m)
CLEARANCE = 0.05  # m, hover height above an object's top
CARRY_SPEED = 0.6  # m/s, gentler while carrying so a freshly grasped object does not slip
PADDLE_HALF = np.array([0.016, 0.02])  # m, half-extents of the closed pads in x, y
PUSH_LEAD = 0.02  # m, how far ahead of the pushing edge the expert aims (0.4 m/s)
_REACH, _PUSH, _PICK = (KINDS.index(k) for k in ("reach", "push", "pick-place"))


def expert_action(family: ManipFamily, state: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Expert actions ``(B, 4)`` for states ``(B, nstate)`` and task params ``(B, 7)``;
    each row follows its own task kind (so ``manip-ml`` batches work too)."""
    p = family.parts(state)
    tcp, obj, gap = p["tcp"], p["obj"], p["gap"]
    kind, goal, half_h, radius = params[:, 0].astype(int), params[:, 1:4], params[:, 4], params[:, 5]
    target = goal.copy()
    grip = -np.ones(len(state))
    speed = np.ones(len(state))

    push_t, push_g = _push(tcp, obj, goal, half_h, radius)
    pick_t, pick_g, carry = _pick(tcp, obj, gap, p["gap_vel"], goal, half_h, radius)
    for k, (t, g) in ((_PUSH, (push_t, push_g)), (_PICK, (pick_t, pick_g))):
        rows = kind == k
        target[rows], grip[rows] = t[rows], g[rows]
    speed[(kind == _PICK) & carry] = CARRY_SPEED
    move = np.clip(GAIN * (target - tcp), -speed[:, None], speed[:, None])
    return np.concatenate([move, grip[:, None]], axis=1)


def _hover_then(tcp, above_xy, hover_z, final):
    """Go up first when low and off target, then across at hover height, then to ``final``."""
    off = np.linalg.norm(tcp[:, :2] - above_xy, axis=1) > 0.012
    target = final.copy()
    high = tcp[:, 2] > hover_z - 0.02
    across = np.concatenate([above_xy, hover_z[:, None]], axis=1)
    up = np.concatenate([tcp[:, :2], hover_z[:, None]], axis=1)
    target[off] = np.where(high[off, None], across[off], up[off])
    return target


def _pick(tcp, obj, gap, gap_vel, goal, half_h, radius):
    grasp_z = np.maximum(obj[:, 2], robot.WORKSPACE_LOW[2])
    grasp = np.concatenate([obj[:, :2], grasp_z[:, None]], axis=1)
    hover_z = obj[:, 2] + half_h + CLEARANCE
    target = _hover_then(tcp, obj[:, :2], hover_z, grasp)
    d_xy = np.linalg.norm(tcp[:, :2] - obj[:, :2], axis=1)
    dz = np.abs(tcp[:, 2] - grasp_z)
    near = (d_xy < 0.02) & (dz < 0.015)
    in_hand = (d_xy < 0.02) & (dz < 0.025) & (gap < 2 * radius + 0.004)
    # Carry once the fingers have stopped on the object (a yawed object first turns
    # in the closing fingers), and keep carrying once it is off the table.
    lifted = obj[:, 2] > half_h + 0.01
    carry = in_hand & ((np.abs(gap_vel) < 0.01) | lifted)
    grip = np.where(near | in_hand, 1.0, -1.0)
    target[near] = grasp[near]
    target[carry] = goal[carry]
    return target, grip, carry


def _push(tcp, obj, goal, half_h, radius):
    line = goal[:, :2] - obj[:, :2]
    dist = np.linalg.norm(line, axis=1, keepdims=True)
    u = line / np.maximum(dist, 1e-9)
    # Push with the closed pads' vertical edge that leads in direction u: an edge
    # contact pushes a round object along the edge-to-centre line, which the
    # expert steers onto the line to the goal (a flat face would push it along
    # the face's normal instead). Near an axis direction the contact point slides
    # continuously along the face, so the aim never jumps between two edges.
    corner = np.clip(4.0 * u, -1.0, 1.0) * PADDLE_HALF
    rel = tcp[:, :2] + corner - obj[:, :2]
    along = np.sum(rel * u, axis=1)
    side = rel[:, 0] * u[:, 1] - rel[:, 1] * u[:, 0]
    behind_xy = obj[:, :2] - u * (radius + 0.02)[:, None] - corner
    hover_z = 2 * half_h + CLEARANCE
    low = np.full(len(tcp), PUSH_HEIGHT)
    target = _hover_then(tcp, behind_xy, hover_z, np.concatenate([behind_xy, low[:, None]], axis=1))
    # In position (behind the object, on the line, low): push, steering back onto the line.
    pushing = (
        (np.abs(side) < 0.5 * radius + 0.01) & (along < -0.3 * radius) & (tcp[:, 2] < PUSH_HEIGHT + 0.015)
    )
    # Slow down near the goal: a pushed object slides (or rolls) on after contact ends.
    lead = np.clip(dist[:, 0] - 0.01, 0.005, PUSH_LEAD)
    ahead = obj[:, :2] + u * (along + lead)[:, None] - corner
    target[pushing] = np.concatenate([ahead, low[:, None]], axis=1)[pushing]
    done = dist[:, 0] < 0.02
    target[done] = tcp[done]
    return target, np.ones(len(tcp))
