"""Ant, randomized-dynamics and terrain families: what is specific to them.

The generic checks every registered id gets (make / reset / step / checkers, split
determinism, facade agreement with default options) live in test_envs.py,
test_tasks.py and test_batch_sim.py.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robometa.cli import main
from robometa.errors import RobometaError
from robometa.sim import BatchSim
from robometa.tasks import make_family
from robometa.tasks.locomotion.ant import HELDOUT_SECTORS, AntDirTask, AntGoalTask, _in_sectors
from robometa.tasks.locomotion.params import AntParamsTask, CheetahParamsTask
from robometa.tasks.locomotion.terrain import TERRAIN_TYPES, Z_MAX, Z_MIN, TerrainGrid, generate_heights
from robometa.tasks.locomotion.terrain_families import TerrainTask

NEW = ["ant-dir", "ant-goal", "cheetah-params", "ant-params", "cheetah-terrain", "ant-terrain"]
SMALL_GRID = TerrainGrid(-4.0, 12.0, -2.0, 2.0, ncol=161, nrow=41, start_radius=1.5, radial=True)


def _run(fam, tasks, steps=20, seed=0, actions=None):
    """Step a BatchSim of ``tasks`` (all reset with the same seed) with shared actions."""
    sim = BatchSim(fam, tasks, seeds=[seed] * len(tasks), nthread=0)
    sim.reset()
    nu = sim.layout.nu
    if actions is None:
        actions = np.random.default_rng(seed).uniform(-1, 1, (steps, nu))
    states, rewards = [], []
    for a in actions:
        r = sim.step(np.tile(a, (len(tasks), 1)))
        states.append(sim.state.copy())
        rewards.append(r.reward)
    return np.stack(states, 1), np.stack(rewards, 1)


# ------------------------------------------------------------------ splits


@pytest.mark.parametrize("name", ["cheetah-params", "ant-params", "cheetah-terrain", "ant-terrain"])
def test_test_split_lies_outside_the_training_region(name):
    fam = make_family(name)
    train = fam.split_tasks("train", seed=0, n=400)
    test = fam.split_tasks("test", seed=0, n=200)
    assert all(fam.in_split(t, "train") for t in train)
    assert not any(fam.in_split(t, "train") for t in test)


def test_params_splits_cover_their_regions():
    fam = make_family("ant-params")
    train = fam.split_tasks("train", n=400)
    test = fam.split_tasks("test", n=200)
    assert {t.crippled for t in train} == {(), *(tuple(u) for u in fam.train_units)}
    assert ("hip_4", "ankle_4") in {t.crippled for t in test}  # the leg training never cripples
    assert max(max(t.mass_scale, 1 / t.mass_scale) for t in test) > 1.5  # stronger scales


def test_terrain_splits_hold_out_types_and_difficulties():
    fam = make_family("cheetah-terrain")
    train = fam.split_tasks("train", n=300)
    test = fam.split_tasks("test", n=300)
    assert {t.terrain for t in train} == {"rough", "slopes", "stairs"}
    assert {t.terrain for t in test} == set(TERRAIN_TYPES)
    assert max(t.difficulty for t in train) <= 0.7
    assert min(t.difficulty for t in test if t.terrain in ("rough", "slopes", "stairs")) > 0.7


@pytest.mark.parametrize("name", ["ant-dir", "ant-goal"])
def test_ant_heldout_sectors(name):
    fam = make_family(name)

    def bearing(t):
        return t.angle if name == "ant-dir" else np.arctan2(t.goal[1], t.goal[0])

    train = np.array([bearing(t) for t in fam.split_tasks("train", n=1000)])
    test = np.array([bearing(t) for t in fam.split_tasks("test", n=300)])
    assert not _in_sectors(train, HELDOUT_SECTORS).any()
    assert _in_sectors(test, HELDOUT_SECTORS).all()
    if name == "ant-goal":
        radii = [np.hypot(*t.goal) for t in fam.split_tasks("train", n=1000)]
        assert max(radii) <= 3.0 and max(radii) > 2.8


# ------------------------------------------------------------------ tasks differ


@pytest.mark.parametrize("name", NEW)
def test_different_tasks_give_different_rewards_for_the_same_actions(name):
    fam = make_family(name)
    tasks = fam.split_tasks("train", seed=0, n=3)
    states, rewards = _run(fam, tasks)
    for i in range(1, 3):
        assert not np.allclose(rewards[0], rewards[i])
    if name not in ("ant-dir", "ant-goal"):  # those change only the reward
        assert not np.allclose(states[0], states[1])


def test_ant_dir_rewards_velocity_along_the_direction():
    fam = make_family("ant-dir")
    tasks = [AntDirTask(0.0), AntDirTask(np.pi / 2), AntDirTask(np.pi)]
    sim = BatchSim(fam, tasks, seeds=[4] * 3, nthread=0)
    sim.reset()
    r = sim.step(np.tile(np.linspace(-1, 1, 8), (3, 1)))
    v = np.stack([r.metrics["x_velocity"], r.metrics["y_velocity"]], 1)
    np.testing.assert_allclose(r.terms["forward"], [v[0, 0], v[1, 1], -v[2, 0]], atol=1e-12)
    np.testing.assert_array_equal(r.terms["healthy"], [1.0, 1.0, 1.0])
    a = np.linspace(-1, 1, 8)
    np.testing.assert_allclose(r.terms["ctrl"], -0.1 * np.sum(a * a))  # PEARL's weight by default
    v5 = make_family("ant-dir", ctrl_cost_weight=0.5)  # Ant-v5's, on request
    np.testing.assert_allclose(v5.ctrl_cost(a[None]), [-0.5 * np.sum(a * a)])


def test_ant_goal_reward_is_minus_the_distance():
    fam = make_family("ant-goal")
    task = AntGoalTask((2.0, -1.0))
    sim = BatchSim(fam, [task], seeds=0, nthread=0)
    sim.reset()
    r = sim.step(np.zeros((1, 8)))
    xy = sim.state[0, fam.layout.qpos][:2]
    assert r.terms["goal"][0] == pytest.approx(-np.hypot(xy[0] - 2.0, xy[1] + 1.0))
    assert r.metrics["goal_distance"][0] == pytest.approx(-r.terms["goal"][0])


def test_ant_terminates_when_unhealthy():
    fam = make_family("ant-dir")
    lay = fam.layout
    state = np.zeros((3, lay.nstate))
    q = lay.qpos.start
    state[:, q + 3] = 1.0  # upright quaternion
    state[:, q + 2] = [0.55, 0.1, 1.5]  # torso height: fine, too low, too high
    np.testing.assert_array_equal(fam.terminated(state, None, None), [False, True, True])
    # On terrain height is no measure; upside down is.
    terrain = make_family("ant-terrain")
    flipped = state.copy()
    flipped[:, q + 3 : q + 7] = [0.0, 1.0, 0.0, 0.0]
    np.testing.assert_array_equal(terrain.terminated(state, None, None), [False, False, False])
    np.testing.assert_array_equal(terrain.terminated(flipped, None, None), [True, True, True])
    # ant-goal never terminates (PEARL's ant-goal did not either).
    assert not make_family("ant-goal").terminated(flipped, None, None).any()


# ------------------------------------------------------------------ dynamics parameters


def test_params_edit_the_numbers_of_one_base_model():
    fam = make_family("cheetah-params")
    base = fam.model(CheetahParamsTask())
    task = CheetahParamsTask(1.3, 0.7, 1.2, 0.9, crippled=("fshin", "bthigh"))
    m = fam.model(task)
    assert m.signature == base.signature
    np.testing.assert_allclose(m.body_mass, 1.3 * base.body_mass)
    np.testing.assert_allclose(m.dof_damping, 0.7 * base.dof_damping)
    np.testing.assert_allclose(m.geom_friction, 1.2 * base.geom_friction)
    gear = 0.9 * base.actuator_gear[:, 0]
    gear[[0, 4]] = 0.0  # bthigh, fshin
    np.testing.assert_allclose(m.actuator_gear[:, 0], gear)
    assert task.crippled == ("bthigh", "fshin")  # canonical order
    # mj_setConst ran: derived quantities follow the new masses.
    assert m.body_subtreemass[0] == pytest.approx(1.3 * base.body_subtreemass[0])


def test_a_crippled_actuator_does_nothing():
    fam = make_family("ant-params")
    task = AntParamsTask(crippled=("hip_2", "ankle_2"))
    hip2 = 4  # actuator order in ant.xml: hip_4, ankle_4, hip_1, ankle_1, hip_2, ...
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (15, 8))
    other = acts.copy()
    other[:, hip2 : hip2 + 2] = rng.uniform(-1, 1, (15, 2))
    s_a, _ = _run(fam, [task], actions=acts)
    s_b, _ = _run(fam, [task], actions=other)
    np.testing.assert_array_equal(s_a, s_b)
    s_c, _ = _run(make_family("ant-params"), [AntParamsTask()], actions=other)
    assert not np.allclose(s_a, s_c)


# ------------------------------------------------------------------ terrain generation


@pytest.mark.parametrize("terrain", TERRAIN_TYPES)
def test_terrain_generation_is_deterministic_by_seed(terrain):
    a = generate_heights(SMALL_GRID, terrain, 0.6, seed=5)
    b = generate_heights(SMALL_GRID, terrain, 0.6, seed=5)
    c = generate_heights(SMALL_GRID, terrain, 0.6, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (SMALL_GRID.nrow, SMALL_GRID.ncol)
    assert np.abs(a).max() > 0.02  # there is terrain
    for seed in range(5):  # the hardest terrain still fits the heightfield's range
        h = generate_heights(SMALL_GRID, terrain, 1.0, seed=seed)
        assert Z_MIN <= h.min() and h.max() <= Z_MAX


@pytest.mark.parametrize("terrain", TERRAIN_TYPES)
def test_start_zone_is_flat_and_difficulty_grows_the_terrain(terrain):
    x, y = np.meshgrid(SMALL_GRID.x, SMALL_GRID.y)
    easy = generate_heights(SMALL_GRID, terrain, 0.1, seed=1)
    hard = generate_heights(SMALL_GRID, terrain, 1.0, seed=1)
    start = np.hypot(x, y) <= SMALL_GRID.start_radius
    assert np.all(easy[start] == 0.0) and np.all(hard[start] == 0.0)
    assert np.ptp(hard) > np.ptp(easy)


@pytest.mark.parametrize("name", ["cheetah-terrain", "ant-terrain"])
def test_heightfield_in_the_model_is_the_generated_terrain(name):
    fam = make_family(name)
    task = TerrainTask("stairs", 0.5, seed=3)
    m = fam.model(task)
    gid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "terrain")
    z = m.geom_pos[gid, 2] + m.hfield_size[0, 2] * m.hfield_data.reshape(m.hfield_nrow[0], m.hfield_ncol[0])
    np.testing.assert_allclose(z, fam.heights(task), atol=1e-6)


@pytest.mark.parametrize("name", ["cheetah-terrain", "ant-terrain"])
def test_terrain_families_share_one_signature(name):
    fam = make_family(name, height_scan=True)
    tasks = fam.split_tasks("train", n=3) + fam.split_tasks("test", n=3)
    assert len({fam.model(t).signature for t in tasks}) == 1


@pytest.mark.parametrize("name,base", [("cheetah-terrain", "cheetah-vel"), ("ant-terrain", "ant-dir")])
def test_robot_never_starts_inside_the_terrain(name, base):
    """At reset, contacts are no deeper than on gymnasium's flat floor for the same pose."""
    fam, flat = make_family(name), make_family(base)
    tasks = fam.split_tasks("train", n=20) + fam.split_tasks("test", n=20)
    sim = BatchSim(fam, tasks, seeds=0, nthread=0)
    sim.reset()
    fm = flat.model(flat.default_task())
    fd = mujoco.MjData(fm)
    for i in range(len(tasks)):
        m, d = sim.data_for(i)
        fd.qpos[:] = d.qpos
        mujoco.mj_forward(fm, fd)
        deepest = min((c.dist for c in d.contact[: d.ncon]), default=0.0)
        flat_deepest = min((c.dist for c in fd.contact[: fd.ncon]), default=0.0)
        assert deepest >= min(flat_deepest, 0.0) - 1e-6, tasks[i]


def test_height_scan_reads_the_terrain():
    fam = make_family("cheetah-terrain", height_scan=True)
    task = TerrainTask("slopes", 0.8, seed=2)
    m = fam.model(task)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)  # the reference pose: torso level at z = 0.7
    scan = fam.scan(d.sensordata[None])[0]
    x = fam.scan_points[:, 0]
    ground = np.interp(x, fam.grid.x, fam.heights(task)[1])
    np.testing.assert_allclose(scan, 0.7 - ground, atol=1e-3)
    assert np.ptp(scan) > 0.05  # the rays do see a slope


def test_height_scan_reads_ground_above_torso_level():
    """Rays start above the torso, so ground higher than the torso (a nose-down torso
    before a slope) reads as a negative clearance instead of a ray cast from inside it."""
    fam = make_family("cheetah-terrain", height_scan=True)
    task = TerrainTask("slopes", 0.8, seed=10)  # climbs to 0.36 m under the last rays
    m = fam.model(task)
    d = mujoco.MjData(m)
    d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "rootz")]] = -0.5
    mujoco.mj_forward(m, d)  # torso level at z = 0.2
    ground = np.interp(fam.scan_points[:, 0], fam.grid.x, fam.heights(task)[1])
    assert ground.max() > 0.3
    np.testing.assert_allclose(fam.scan(d.sensordata[None])[0], 0.2 - ground, atol=1e-3)


# ------------------------------------------------------------------ batching and facade


@pytest.mark.parametrize("name", ["cheetah-terrain", "ant-terrain", "ant-params"])
def test_mixed_batch_agrees_with_the_facade(name, assert_facade_agrees):
    """Envs with different terrains / dynamics in one batch == each alone in gymnasium."""
    kwargs = {"height_scan": True} if "terrain" in name else {}
    fam = make_family(name, **kwargs)
    if "terrain" in name:
        tasks = [TerrainTask("rough", 0.5, 1), TerrainTask("gaps", 0.9, 2, 0.7), TerrainTask("waves", 0.3, 3)]
    else:
        tasks = fam.split_tasks("train", n=2) + fam.split_tasks("test", n=1)
    actions = np.random.default_rng(1).uniform(-1, 1, (12, 3, fam.layout.nu))
    sim = assert_facade_agrees(fam, tasks, [7, 8, 9], actions, **kwargs)
    assert len(sim._groups) == 1  # one rollout call for the whole batch


def test_height_scan_env_passes_the_checker():
    env = gym.make("robometa/AntTerrain-v0", height_scan=True).unwrapped
    assert env.observation_space.shape == (27 + 20,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check_env(env, skip_render_check=True)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: TerrainTask("lava", 0.5, 0), r"unknown terrain type 'lava'; valid: rough, slopes, stairs"),
        (lambda: TerrainTask("rough", 1.5, 0), r"difficulty must be in \[0.0, 1.0\]"),
        (lambda: TerrainTask("rough", 0.5, -1), r"seed must be an integer in \[0, 2147483647\]"),
        (lambda: TerrainTask("rough", 0.5, 0, 9.0), r"friction_scale must be in \[0.25, 4.0\]"),
        (lambda: CheetahParamsTask(mass_scale=3.0), r"mass_scale must be in \[0.4, 2.5\]"),
        (lambda: CheetahParamsTask(crippled=("knee",)), r"unknown joint 'knee'.*valid: bthigh, bshin"),
        (lambda: CheetahParamsTask(crippled=("bthigh", "bthigh")), r"twice"),
        (
            lambda: AntParamsTask(crippled=("hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3")),
            r"at most 4 of the 8 actuated joints",
        ),
        (lambda: AntGoalTask((2.5, 2.5)), r"goal distance from the origin must be in \[0.0, 3.0\]"),
        (lambda: AntDirTask(7.0), r"angle must be in \[0.0, 6.28"),
        (lambda: make_family("ant-terrain", height_scan="yes"), r"height_scan must be true or false"),
    ],
)
def test_bad_input_names_the_valid_range(make, match):
    with pytest.raises(RobometaError, match=match):
        make()


def test_task_from_json_validates():
    fam = make_family("cheetah-terrain")
    with pytest.raises(RobometaError, match="unknown terrain type"):
        fam.task_from_dict({"terrain": "ice", "difficulty": 0.1, "seed": 0})


# ------------------------------------------------------------------ picture


@pytest.mark.gl
def test_render_grid_cli_writes_a_png(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "grid.png"
    rc = main(["tasks", "--render", "cheetah-params", "--out", str(out), "--count", "2", "--columns", "2"])
    assert rc == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (240, 640, 3)
    assert img.std() > 10  # a picture, not a blank
    assert main(["tasks", "--render", "cheetah-params"]) == 2
    assert main(["tasks", "--render", "no-such-family", "--out", str(out)]) == 2
    assert "valid: cheetah-vel" in capsys.readouterr().err
