"""Procedural heightfield terrain: generation from (type, difficulty, seed) and MjSpec assembly.

Heights are generated on a fixed grid (a :class:`TerrainGrid` per robot) from a
seeded ``numpy`` generator: the same ``(type, difficulty, seed)`` always gives the
same heights. A family builds its heightfield once with ``MjSpec``
(:func:`add_terrain`) and writes each task's heights into a copy of the compiled
model (:func:`write_heights`), so every terrain of a family has the same sizes and
all its models share one size signature.

Nominal ground is ``z = 0``. A flat start zone around the origin is kept at exactly
``z = 0``, so a robot reset on flat ground never starts inside the terrain. Beyond
the grid the ground is a plane at ``Z_MIN`` (1.5 m down): a robot that runs off the
terrain drops onto it.

Terrain types (``d`` is the difficulty in [0, 1]; lengths in metres):

- ``rough``: smooth random bumps on a 0.4 m lattice, amplitude ``0.02 + 0.13 d``;
- ``slopes``: ramps 2-4 m long, climbing or descending at up to ``25 d`` degrees,
  heights kept within +-1 m;
- ``stairs``: flights of 3-6 steps up then down, steps 0.4-0.8 m deep and
  ``0.02 + 0.16 d`` high;
- ``waves``: sums of two sinusoids (wavelengths 1.5-4 m, one along x and one
  along y; only the first for planar robots), amplitude ``0.02 + 0.2 d``;
- ``gaps``: trenches ``0.1 + 0.4 d`` wide and ``0.2 + 0.4 d`` deep between
  platforms 1.5-3 m long.

``slopes``, ``stairs`` and ``gaps`` are profiles along x (edges parallel to y, across
the direction the robots run in) that start level at the edge of the start zone and
mirror behind it; ``rough`` and ``waves`` fade in instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robometa.errors import choice_error

TERRAIN_TYPES = ("rough", "slopes", "stairs", "waves", "gaps")
FADE = 1.0  # metres over which the terrain fades in beyond the start zone
BASE_DEPTH = 0.5  # thickness of the heightfield's solid base below its lowest point, m
FLOOR_GAP = 0.002  # the floor plane sits this far below the terrain's lowest point, m
# Every terrain's heights lie in [Z_MIN, Z_MAX] m (the generators below stay inside).
Z_MIN, Z_MAX = -1.5, 1.5


@dataclass(frozen=True)
class TerrainGrid:
    """The heightfield's extent and resolution (fixed per family).

    Column ``c`` lies at ``x = x_min + c * (x_max - x_min) / (ncol - 1)``, row ``r`` at
    ``y = y_min + r * (y_max - y_min) / (nrow - 1)``, as MuJoCo lays out heightfields.
    """

    x_min: float
    x_max: float
    y_min: float
    y_max: float
    ncol: int  # samples along x
    nrow: int  # samples along y
    start_radius: float  # flat zone: |x| (planar) or distance from the origin (radial)
    # True: a robot free in the plane (ant): the start zone is a disc and terrain
    # varies in x and y. False: a planar robot (cheetah) living at y = 0: the start
    # zone is a band in x and all terrain varies along x only.
    radial: bool

    @property
    def x(self) -> np.ndarray:
        return np.linspace(self.x_min, self.x_max, self.ncol)

    @property
    def y(self) -> np.ndarray:
        return np.linspace(self.y_min, self.y_max, self.nrow)

    def fade(self) -> np.ndarray:
        """``(nrow, ncol)`` weight: 0 in the start zone, rising to 1 over ``FADE`` m."""
        x, y = np.meshgrid(self.x, self.y)
        dist = np.hypot(x, y) if self.radial else np.abs(x)
        return np.clip((dist - self.start_radius) / FADE, 0.0, 1.0)


def check_terrain_type(terrain: str) -> str:
    if terrain not in TERRAIN_TYPES:
        raise choice_error("terrain type", terrain, TERRAIN_TYPES)
    return terrain


def generate_heights(grid: TerrainGrid, terrain: str, difficulty: float, seed: int) -> np.ndarray:
    """Terrain heights ``(nrow, ncol)`` in metres above nominal ground; deterministic in the seed."""
    check_terrain_type(terrain)
    rng = np.random.default_rng([int(seed), TERRAIN_TYPES.index(terrain)])
    d = float(difficulty)
    x = grid.x
    # A planar robot sees one line of the terrain: give it one line's worth of
    # features (rows interpolated against each other would only blur them).
    y = grid.y if grid.radial else np.zeros(1)
    if terrain == "rough":
        h = _rough(rng, x, y, 0.02 + 0.13 * d)
    elif terrain == "waves":
        h = _waves(rng, x, y, 0.02 + 0.2 * d)
    else:
        # Profiles start level at the edge of the start zone and mirror behind it.
        u = np.maximum(np.abs(x) - grid.start_radius, 0.0)
        profile = {"slopes": _slopes, "stairs": _stairs, "gaps": _gaps}[terrain](rng, u, d)
        return np.ascontiguousarray(np.broadcast_to(profile, (grid.nrow, grid.ncol)))
    return np.ascontiguousarray(np.broadcast_to(h, (grid.nrow, grid.ncol)) * grid.fade())


def _rough(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, amplitude: float) -> np.ndarray:
    spacing = 0.4
    shape = (int((y[-1] - y[0]) / spacing) + 2, int((x[-1] - x[0]) / spacing) + 2)
    lattice = rng.uniform(-amplitude, amplitude, size=shape)
    # Bilinear interpolation of the lattice at the grid's samples.
    fx, fy = (x - x[0]) / spacing, (y - y[0]) / spacing
    ix, iy = np.floor(fx).astype(int), np.floor(fy).astype(int)
    wx, wy = (fx - ix)[None, :], (fy - iy)[:, None]
    a, b = lattice[iy][:, ix], lattice[iy][:, ix + 1]
    c, d = lattice[iy + 1][:, ix], lattice[iy + 1][:, ix + 1]
    return (1 - wy) * ((1 - wx) * a + wx * b) + wy * ((1 - wx) * c + wx * d)


def _waves(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, amplitude: float) -> np.ndarray:
    lam_x, lam_y = rng.uniform(1.5, 4.0, size=2)
    phase_x, phase_y = rng.uniform(0.0, 2 * np.pi, size=2)
    wx = np.sin(2 * np.pi * x / lam_x + phase_x)
    if y.size == 1:  # planar: the whole amplitude along x
        return amplitude * wx[None, :]
    wy = np.sin(2 * np.pi * y / lam_y + phase_y)
    return 0.5 * amplitude * (wx[None, :] + wy[:, None])


def _segments(rng: np.random.Generator, u: np.ndarray, low: float, high: float) -> np.ndarray:
    """Boundaries, from 0, of consecutive segments with lengths uniform in [low, high] covering ``u``."""
    n = int(np.ceil(u.max() / low)) + 2
    return np.concatenate([[0.0], np.cumsum(rng.uniform(low, high, size=n))])


def _slopes(rng: np.random.Generator, u: np.ndarray, d: float) -> np.ndarray:
    edges = _segments(rng, u, 2.0, 4.0)
    max_grade = np.tan(np.deg2rad(25.0 * d))
    knots = [0.0]
    for length in np.diff(edges):
        grade = max_grade * rng.uniform(0.3, 1.0) * rng.choice([-1.0, 1.0])
        nxt = knots[-1] + grade * length
        if abs(nxt) > 1.0:  # bounce back instead of climbing out of range
            nxt = float(np.clip(knots[-1] - grade * length, -1.0, 1.0))
        knots.append(nxt)
    return np.interp(u, edges, knots)


def _stairs(rng: np.random.Generator, u: np.ndarray, d: float) -> np.ndarray:
    edges = _segments(rng, u, 0.4, 0.8)
    rise = 0.02 + 0.16 * d
    levels, level, flight = [0], 0, []
    while len(levels) < edges.size:
        if not flight:
            n = int(rng.integers(3, 7))
            flight = [1] * n + [-1] * n
        level += flight.pop(0)
        levels.append(level)
    idx = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, edges.size - 1)
    return rise * np.asarray(levels, dtype=np.float64)[idx]


def _gaps(rng: np.random.Generator, u: np.ndarray, d: float) -> np.ndarray:
    width, depth = 0.1 + 0.4 * d, 0.2 + 0.4 * d
    ends = _segments(rng, u, 1.5 + width, 3.0 + width)[1:]
    h = np.zeros_like(u)
    for e in ends:  # each segment is a platform followed by a trench
        h[(u >= e - width) & (u < e)] = -depth
    return h


def add_terrain(spec: mujoco.MjSpec, grid: TerrainGrid, name: str = "terrain") -> None:
    """Add a heightfield geom on ``grid`` to ``spec`` and lower the floor plane under it.

    The heightfield spans heights ``[Z_MIN, Z_MAX]`` and starts all at ``Z_MIN``;
    :func:`write_heights` sets a task's heights on a compiled copy. Because the extent
    never changes, neither do the geom's bounding box and the model's sizes. The
    spec's plane named ``floor`` (gymnasium's robots have one) stays beyond the
    heightfield, just below its lowest possible point; the heightfield copies its
    contact properties and gets a checker texture of 1 m squares.
    """
    rx, ry = (grid.x_max - grid.x_min) / 2, (grid.y_max - grid.y_min) / 2
    hfield = spec.add_hfield(
        name=name, nrow=grid.nrow, ncol=grid.ncol, size=[rx, ry, Z_MAX - Z_MIN, BASE_DEPTH]
    )
    hfield.userdata = np.zeros(grid.nrow * grid.ncol, dtype=np.float32).tolist()
    floor = spec.geom("floor")
    # A hair below the heightfield's lowest point: no double contacts, no z-fighting.
    floor.pos = [floor.pos[0], floor.pos[1], Z_MIN - FLOOR_GAP]
    texture = spec.add_texture(
        name=f"{name}_checker",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        width=64,
        height=64,
        rgb1=[0.62, 0.56, 0.46],
        rgb2=[0.5, 0.45, 0.37],
    )
    material = spec.add_material(name=f"{name}_material", texrepeat=[1.0, 1.0], texuniform=True)
    material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = texture.name
    spec.worldbody.add_geom(
        name=name,
        type=mujoco.mjtGeom.mjGEOM_HFIELD,
        hfieldname=name,
        pos=[(grid.x_min + grid.x_max) / 2, (grid.y_min + grid.y_max) / 2, Z_MIN],
        contype=floor.contype,
        conaffinity=floor.conaffinity,
        condim=floor.condim,
        friction=floor.friction,
        margin=floor.margin,
        solref=floor.solref,
        solimp=floor.solimp,
        material=material.name,
    )


def write_heights(model: mujoco.MjModel, heights: np.ndarray, name: str = "terrain") -> None:
    """Write ``heights`` (metres, ``(nrow, ncol)``) into the heightfield ``add_terrain`` made.

    MuJoCo stores heightfield data in [0, 1] scaled by the elevation size; the surface
    at a sample is ``Z_MIN + (Z_MAX - Z_MIN) * data``.
    """
    hid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_HFIELD, name)
    nrow, ncol = int(model.hfield_nrow[hid]), int(model.hfield_ncol[hid])
    if heights.shape != (nrow, ncol):
        raise ValueError(f"heights {heights.shape} do not fit the heightfield ({nrow}, {ncol})")
    if heights.min() < Z_MIN or heights.max() > Z_MAX:
        raise ValueError(f"heights leave [{Z_MIN}, {Z_MAX}] m: [{heights.min():.3f}, {heights.max():.3f}]")
    adr = int(model.hfield_adr[hid])
    model.hfield_data[adr : adr + nrow * ncol] = ((heights - Z_MIN) / (Z_MAX - Z_MIN)).ravel()
