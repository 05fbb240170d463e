"""Procedural table-top objects: a frozen spec, its validation, sampling and MjSpec build.

An object is one rigid body with a free joint and one primitive geom. Its spec
(shape, size, mass, friction, colour) is a plain record that round-trips through
JSON inside a task. All shapes give models of one size signature (one body, one
free joint, one geom), so a single ``mujoco.rollout`` call can mix them.

Conventions (the object's body frame is z-up, at the geometric centre):

- ``box``: ``size = (half_x, half_y, half_z)``;
- ``cylinder``: ``size = (radius, half_height)``, standing upright;
- ``sphere``: ``size = (radius,)``;
- ``capsule``: ``size = (radius, half_length)``, lying on its side along body x
  (a capsule on its hemispherical end would topple);
- ``ellipsoid``: ``size = (semi_x, semi_y, semi_z)``.

Size ranges keep every object graspable at any yaw: its horizontal extent never
exceeds :data:`MAX_WIDTH` (the gripper opens to 0.10 m), and its half-height is at
least :data:`MIN_HALF_HEIGHT` so the finger pads (0.04 m tall, whose lowest point
is the table) meet it below its top. Pushed at the pads' mid-height (0.021 m), an
object with friction coefficient mu tips over when mu * 0.021 m exceeds its
half-width; the sampled frictions (0.4-0.8) and minimum half-widths (0.018 m) keep
pushing possible without toppling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

from robometa.errors import RobometaError, choice_error
from robometa.tasks.base import check_number

SHAPES = ("box", "cylinder", "sphere", "capsule", "ellipsoid")

# Per shape, the valid (low, high) range of each size entry in metres.
SIZE_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "box": ((0.018, 0.028), (0.018, 0.028), (0.02, 0.035)),
    "cylinder": ((0.02, 0.035), (0.02, 0.035)),
    "sphere": ((0.02, 0.035),),
    "capsule": ((0.02, 0.025), (0.01, 0.02)),
    "ellipsoid": ((0.02, 0.035), (0.02, 0.035), (0.02, 0.03)),
}
MASS_RANGE = (0.02, 1.0)  # kg
FRICTION_RANGE = (0.3, 1.5)  # sliding friction coefficient
MAX_WIDTH = 0.09  # m, widest horizontal extent of any valid object
MIN_HALF_HEIGHT = 0.02  # m
ROLLING_TORSION = (0.01, 0.005)  # torsional and rolling friction lengths (m)

_GEOM_TYPES = {
    "box": mujoco.mjtGeom.mjGEOM_BOX,
    "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
    "sphere": mujoco.mjtGeom.mjGEOM_SPHERE,
    "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE,
    "ellipsoid": mujoco.mjtGeom.mjGEOM_ELLIPSOID,
}
# Rotates a capsule's axis (geom z) onto body x, so that it lies on the table.
_LYING = (math.sqrt(0.5), 0.0, math.sqrt(0.5), 0.0)


def check_shape(shape: str) -> str:
    if shape not in SHAPES:
        raise choice_error("object shape", shape, SHAPES)
    return shape


def check_size(shape: str, size: Sequence[float]) -> tuple[float, ...]:
    """Validate a shape's size tuple against :data:`SIZE_RANGES`."""
    ranges = SIZE_RANGES[check_shape(shape)]
    if isinstance(size, (int, float)) or len(size) != len(ranges):
        raise RobometaError(
            f"a {shape} has {len(ranges)} size value(s) in ranges {_fmt_ranges(ranges)} m, got {size!r}"
        )
    return tuple(
        check_number(f"{shape} size[{i}]", v, lo, hi) for i, (v, (lo, hi)) in enumerate(zip(size, ranges))
    )


def _fmt_ranges(ranges) -> str:
    return ", ".join(f"[{lo}, {hi}]" for lo, hi in ranges)


@dataclass(frozen=True)
class ObjectSpec:
    """One procedural object.

    Attributes:
        shape: one of :data:`SHAPES`.
        size: shape-specific sizes in metres (see the module docstring).
        mass: kg, in :data:`MASS_RANGE`.
        friction: sliding friction coefficient, in :data:`FRICTION_RANGE`.
        rgb: colour, three values in [0, 1].
    """

    shape: str
    size: tuple[float, ...]
    mass: float
    friction: float
    rgb: tuple[float, float, float] = (0.8, 0.3, 0.2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_size(self.shape, self.size))
        object.__setattr__(self, "mass", check_number("object mass (kg)", self.mass, *MASS_RANGE))
        object.__setattr__(self, "friction", check_number("object friction", self.friction, *FRICTION_RANGE))
        if isinstance(self.rgb, (int, float, str)) or len(self.rgb) != 3:
            raise RobometaError(f"object rgb must be three numbers in [0, 1], got {self.rgb!r}")
        object.__setattr__(self, "rgb", tuple(check_number("object rgb", c, 0.0, 1.0) for c in self.rgb))

    @property
    def half_height(self) -> float:
        """Height of the centre above the table when the object rests (m)."""
        # Index of the vertical size entry per shape (a lying capsule rests on its radius).
        return self.size[{"box": 2, "cylinder": 1, "sphere": 0, "capsule": 0, "ellipsoid": 2}[self.shape]]

    @property
    def radius_xy(self) -> float:
        """Radius of the smallest vertical cylinder around the object (m)."""
        s = self.size
        if self.shape == "box":
            return math.hypot(s[0], s[1])
        if self.shape == "capsule":
            return s[0] + s[1]
        if self.shape == "ellipsoid":
            return max(s[0], s[1])
        return s[0]


def sample_object(
    rng: np.random.Generator,
    shapes: Sequence[str] = SHAPES,
    mass_range: tuple[float, float] = (0.05, 0.5),
    friction_range: tuple[float, float] = (0.4, 0.8),
) -> ObjectSpec:
    """Draw an object: uniform shape, sizes uniform in the shape's ranges, uniform mass,
    friction and a saturated random colour. Draws in a fixed order, so equal generator
    states give equal objects."""
    shape = shapes[int(rng.integers(len(shapes)))]
    size = tuple(float(rng.uniform(lo, hi)) for lo, hi in SIZE_RANGES[shape])
    mass = float(rng.uniform(*mass_range))
    friction = float(rng.uniform(*friction_range))
    hue = float(rng.uniform())
    return ObjectSpec(shape, size, mass, friction, _hue_to_rgb(hue))


def _hue_to_rgb(hue: float) -> tuple[float, float, float]:
    # Saturated, mid-bright colours stand out against the wooden table.
    import colorsys

    return tuple(round(c, 4) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.9))


def add_object(spec: mujoco.MjSpec, obj: ObjectSpec, name: str = "object") -> mujoco.MjsBody:
    """Add ``obj`` as a free body (at the origin; its pose comes from the state) to ``spec``."""
    body = spec.worldbody.add_body(name=name)
    body.add_freejoint(name=name)
    geom_size = np.zeros(3)
    geom_size[: len(obj.size)] = obj.size
    geom = body.add_geom(
        name=f"{name}_geom",
        type=_GEOM_TYPES[obj.shape],
        size=geom_size,
        mass=obj.mass,
        # Torsional and rolling friction (condim 6): grasped objects do not spin in the
        # fingers, and round objects roll to a stop instead of rolling off the table.
        friction=[obj.friction, ROLLING_TORSION[0], ROLLING_TORSION[1]],
        rgba=[*obj.rgb, 1.0],
        condim=6,
    )
    if obj.shape == "capsule":
        geom.quat = _LYING
        # MuJoCo would put the inertia frame on the rotated geom, which makes the body
        # "non-simple" (dof_simplenum differs) even though the model's size signature is
        # unchanged; rollout then cannot share one MjData across the mixed models. The
        # lying capsule's principal axes are the body axes, so give them explicitly.
        axial, transverse = _capsule_inertia(obj.size[0], obj.size[1], obj.mass)
        body.explicitinertial = True
        body.mass = obj.mass
        body.inertia = [axial, transverse, transverse]
        body.ipos = [0.0, 0.0, 0.0]
        body.iquat = [1.0, 0.0, 0.0, 0.0]
    return body


def _capsule_inertia(radius: float, half_length: float, mass: float) -> tuple[float, float]:
    """Principal moments (axial, transverse) in kg m^2 of a solid capsule, as MuJoCo computes them."""
    spec = mujoco.MjSpec()
    body = spec.worldbody.add_body()
    body.add_freejoint()
    body.add_geom(type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[radius, half_length, 0.0], mass=mass)
    inertia = spec.compile().body_inertia[1]  # upright: axis along z
    return float(inertia[2]), float(inertia[0])
