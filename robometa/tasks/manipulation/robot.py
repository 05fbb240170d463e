"""The table-top arm of ``assets/arm/scene.xml``: workspace, joint addresses, arm IK.

Control is Cartesian, as in Meta-World (action = end-effector displacement xyz +
gripper open/close). Meta-World moves a mocap body welded to the hand; here the
gripper rides on three slide joints driven by integrated-velocity servos
(MuJoCo's ``intvelocity``): the action ``a`` in [-1, 1]^3 is the target velocity in
m/s, so one 0.01 s control step moves the target by at most 1 cm, like Meta-World's
``action_scale = 1/100``. The target is the actuators' activation, which lives in
``mjSTATE_FULLPHYSICS`` (a mocap position does not), so ``mujoco.rollout`` carries it
with no change to BatchSim; ``actrange`` clamps it to the workspace, like
Meta-World's ``hand_low``/``hand_high`` clipping. The TCP position is exactly the
slide joints' ``qpos``. The arm's three joints are passive and follow the gripper
through a connect constraint at the wrist (Meta-World's Sawyer joints are likewise
unactuated and follow the mocap weld); :func:`arm_ik` places them at reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from robometa.assets import asset_path

SCENE = "arm/scene.xml"

# TCP workspace (m), the actuators' actrange: x, y, z.
WORKSPACE_LOW = np.array([-0.3, 0.25, 0.02])
WORKSPACE_HIGH = np.array([0.3, 0.8, 0.4])
HOME = np.array([0.0, 0.4, 0.25])  # TCP position at reset (m)
MAX_GAP = 0.1  # m, finger gap when fully open
GRIP_FORCE = 20.0  # N per finger at action +1 (the motor's gear)

# Arm geometry of the scene file (m): shoulder height, link lengths, wrist above TCP.
SHOULDER_HEIGHT = 0.35
UPPER_ARM = 0.5
FOREARM = 0.5
WRIST_ABOVE_TCP = 0.1


def scene_spec() -> mujoco.MjSpec:
    """The arm-and-table scene as an editable spec (no object, no goal yet)."""
    return mujoco.MjSpec.from_file(str(asset_path(SCENE)))


def arm_ik(tcp: np.ndarray) -> tuple[float, float, float]:
    """Joint angles (yaw, shoulder, elbow) in rad that put the forearm's end on the
    wrist above ``tcp`` (m), elbow up."""
    w = np.asarray(tcp, dtype=np.float64) + (0.0, 0.0, WRIST_ABOVE_TCP)
    yaw = math.atan2(-w[0], w[1])  # the zero pose points along +y
    r = math.hypot(w[0], w[1])
    z = w[2] - SHOULDER_HEIGHT
    cos_elbow = (r * r + z * z - UPPER_ARM**2 - FOREARM**2) / (2 * UPPER_ARM * FOREARM)
    elbow = -math.acos(min(1.0, max(-1.0, cos_elbow)))
    shoulder = math.atan2(z, r) - math.atan2(FOREARM * math.sin(elbow), UPPER_ARM + FOREARM * math.cos(elbow))
    return yaw, shoulder, elbow


@dataclass(frozen=True)
class Addresses:
    """Indices into ``qpos`` / ``qvel`` / ``act`` of a compiled scene with an object."""

    arm_qpos: np.ndarray  # (3,) yaw, shoulder, elbow
    tcp_qpos: np.ndarray  # (3,) x, y, z slide joints
    tcp_qvel: np.ndarray  # (3,)
    finger_qpos: np.ndarray  # (2,) left, right opening (m)
    finger_qvel: np.ndarray  # (2,)
    obj_qpos: int  # start of the object's free joint (pos 3, quat 4)
    obj_qvel: int  # start of its velocity (lin 3, ang 3)

    @classmethod
    def of(cls, model: mujoco.MjModel, obj: str = "object") -> Addresses:
        def jid(name: str) -> int:
            return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)

        def qpos(*names: str) -> np.ndarray:
            return np.array([model.jnt_qposadr[jid(n)] for n in names])

        def qvel(*names: str) -> np.ndarray:
            return np.array([model.jnt_dofadr[jid(n)] for n in names])

        return cls(
            arm_qpos=qpos("arm_yaw", "arm_shoulder", "arm_elbow"),
            tcp_qpos=qpos("tcp_x", "tcp_y", "tcp_z"),
            tcp_qvel=qvel("tcp_x", "tcp_y", "tcp_z"),
            finger_qpos=qpos("finger_l", "finger_r"),
            finger_qvel=qvel("finger_l", "finger_r"),
            obj_qpos=int(model.jnt_qposadr[jid(obj)]),
            obj_qvel=int(model.jnt_dofadr[jid(obj)]),
        )
