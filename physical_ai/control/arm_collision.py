"""Capsule/sphere model of an arm's links from an MJCF's collision geoms, and its clearance to obstacles.

Forward kinematics comes from MuJoCo (`mj_kinematics` on a private MjData), so the link model is the same one the
simulator collides with. Each collision geom of a body moved by the controlled joints becomes a capsule (segment +
radius) that contains it: capsules exactly, cylinders as capsules, spheres as zero-length capsules, boxes as a
capsule along their longest axis, anything else as its bounding sphere. For the 1 kHz loop each capsule is covered
by a row of spheres (spacing <= its radius, radii grown to cover the gaps, so distances are conservative by at most
~12 % of a link radius): sphere-to-obstacle distances are one matrix product, a few numpy calls for any count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np


@dataclasses.dataclass(frozen=True)
class ObstacleSpheres:
    """Obstacles as spheres in the model's world frame, with what the distance kernel reuses every cycle."""

    centers: np.ndarray    # (M, 3)
    radii: np.ndarray      # (M,)
    velocities: np.ndarray  # (M, 3)
    centers_t2: np.ndarray  # (3, M) twice the transposed centres
    c2: np.ndarray         # (M,) squared norms of the centres

    @classmethod
    def from_arrays(cls, centers: np.ndarray, radii: np.ndarray, velocities: np.ndarray) -> ObstacleSpheres:
        """Keep the finite rows of centers (M, 3), radii (M,), velocities (M, 3); negative radii become 0."""
        centers = np.asarray(centers, float).reshape(-1, 3)
        radii = np.asarray(radii, float).reshape(-1)
        velocities = np.asarray(velocities, float).reshape(-1, 3)
        if not (len(centers) == len(radii) == len(velocities)):
            raise ValueError("centers, radii and velocities must have the same length")
        ok = np.all(np.isfinite(centers), axis=1) & np.isfinite(radii) & np.all(np.isfinite(velocities), axis=1)
        c = np.ascontiguousarray(centers[ok])
        return cls(c, np.maximum(radii[ok], 0.0), velocities[ok], np.ascontiguousarray(2.0 * c.T), (c * c).sum(1))

    @property
    def count(self) -> int:
        """Number of obstacles."""
        return int(self.radii.shape[0])


@dataclasses.dataclass
class Clearance:
    """Smallest distances between the arm and obstacles (surface to surface), nearest first.

    Attributes:
        distance: (K,) per obstacle, negative when penetrating.
        point: (K, 3) centre of the arm's closest covering sphere, world frame.
        normal: (K, 3) unit vectors from the obstacle centre towards that point.
        body: (K,) MuJoCo body id owning that sphere.
        index: (K,) which obstacle (row of the ObstacleSpheres) each entry is.
    """

    distance: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    body: np.ndarray
    index: np.ndarray


class CapsuleArm:
    """An arm's collision geometry as capsules, posed by MuJoCo forward kinematics for given joint positions."""

    def __init__(self, model: mujoco.MjModel, joint_names: Sequence[str], geom_prefix: str = "") -> None:
        """Build from a MuJoCo model and the names of the joints the controller commands.

        Args:
            model: the MuJoCo model.
            joint_names: controlled joints; every collision geom they move is part of the link model.
            geom_prefix: when non-empty, only geoms whose name starts with it (e.g. "col_").

        Raises:
            ValueError: when a joint is missing or is not a hinge/slide joint, or no collision geom moves with them.
        """
        self.model = model
        self.data = mujoco.MjData(model)
        self.qpos_adr = np.empty(len(joint_names), dtype=int)
        self.dof_adr = np.empty(len(joint_names), dtype=int)
        moved = np.zeros(model.nbody, dtype=bool)
        for i, name in enumerate(joint_names):
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise ValueError(f"joint {name!r} not in the model")
            if int(model.jnt_type[jid]) not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                raise ValueError(f"joint {name!r} is not a hinge or slide joint")
            self.qpos_adr[i] = model.jnt_qposadr[jid]
            self.dof_adr[i] = model.jnt_dofadr[jid]
            moved[model.jnt_bodyid[jid]] = True
        # A body moves with the arm when it or any ancestor carries a controlled joint.
        for b in range(1, model.nbody):
            moved[b] |= moved[model.body_parentid[b]]
        collide = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
        named = np.array([(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "").startswith(geom_prefix)
                          for g in range(model.ngeom)], dtype=bool)
        geoms = np.flatnonzero(moved[model.geom_bodyid] & collide & named)
        if geoms.size == 0:
            raise ValueError("no collision geom moves with the given joints")
        self.geoms = geoms
        self.body = model.geom_bodyid[geoms].copy()
        size = model.geom_size[geoms]
        gtype = model.geom_type[geoms]
        self.half_length = np.zeros(len(geoms))
        self.radius = model.geom_rbound[geoms].copy()
        self.axis = np.full(len(geoms), 2)
        capsule_like = (gtype == int(mujoco.mjtGeom.mjGEOM_CAPSULE)) | (gtype == int(mujoco.mjtGeom.mjGEOM_CYLINDER))
        self.radius[capsule_like] = size[capsule_like, 0]
        self.half_length[capsule_like] = size[capsule_like, 1]
        sphere = gtype == int(mujoco.mjtGeom.mjGEOM_SPHERE)
        self.radius[sphere] = size[sphere, 0]
        box = gtype == int(mujoco.mjtGeom.mjGEOM_BOX)
        if np.any(box):
            longest = np.argmax(size[box], axis=1)
            self.axis[box] = longest
            self.half_length[box] = size[box][np.arange(longest.size), longest]
            others = np.sum(size[box] ** 2, axis=1) - self.half_length[box] ** 2
            self.radius[box] = np.sqrt(others)
        # Sphere cover of each capsule: k spheres at spacing <= radius, radius grown by the half gap.
        counts = np.where(self.half_length > 0, np.ceil(2 * self.half_length / np.maximum(self.radius, 1e-3)) + 1,
                          1).astype(int)
        self.sphere_geom = np.repeat(np.arange(len(geoms)), counts)
        starts = np.cumsum(counts) - counts
        frac = np.where(counts[self.sphere_geom] > 1, (np.arange(self.sphere_geom.size) - starts[self.sphere_geom])
                        / np.maximum(counts[self.sphere_geom] - 1, 1), 0.5)
        hl = self.half_length[self.sphere_geom]
        self.sphere_offset = (2 * frac - 1) * hl
        gap = np.where(counts[self.sphere_geom] > 1, 2 * hl / np.maximum(counts[self.sphere_geom] - 1, 1), 0.0)
        self.sphere_radius = np.sqrt(self.radius[self.sphere_geom] ** 2 + (gap / 2) ** 2)
        self.sphere_body = self.body[self.sphere_geom]
        self._sphere_radius_col = self.sphere_radius[:, None]
        self._sphere_offset_col = self.sphere_offset[:, None]
        self._geom_index = np.arange(len(geoms))
        self._jacp = np.zeros((3, model.nv))

    @classmethod
    def from_file(cls, path: str | Path, joint_names: Sequence[str], geom_prefix: str = "") -> CapsuleArm:
        """Load an MJCF (or URDF MuJoCo can read) and build the capsule model."""
        return cls(mujoco.MjModel.from_xml_path(str(path)), joint_names, geom_prefix)

    def segments(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Capsule end points (G, 3) and (G, 3) in the world frame for joint positions q."""
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)  # joint axes in world coordinates, needed by mj_jac
        pos = self.data.geom_xpos[self.geoms]
        rot = self.data.geom_xmat[self.geoms].reshape(-1, 3, 3)
        axis = rot[np.arange(len(self.geoms)), :, self.axis] * self.half_length[:, None]
        return pos - axis, pos + axis

    def spheres(self, q: np.ndarray) -> np.ndarray:
        """Centres (S, 3) of the sphere cover (radii `sphere_radius`) in the world frame for joint positions q."""
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)  # joint axes in world coordinates, needed by mj_jac
        rot = self.data.geom_xmat[self.geoms].reshape(-1, 3, 3)
        axis = rot[self._geom_index, :, self.axis]
        return self.data.geom_xpos[self.geoms][self.sphere_geom] + axis[self.sphere_geom] * self._sphere_offset_col

    def clearance(self, q: np.ndarray, obstacles: ObstacleSpheres, k: int | None = None) -> Clearance:
        """Smallest surface distances between the arm at q and its `k` nearest obstacles (all when None).

        Uses the sphere cover, so a distance is never larger than the one to the capsules. Entries are sorted by
        distance; `Clearance.index` says which obstacle each is.
        """
        p = self.spheres(q)
        d2 = (p * p).sum(1)[:, None] + obstacles.c2 - p @ obstacles.centers_t2
        surf = np.sqrt(np.maximum(d2, 0.0)) - (self._sphere_radius_col + obstacles.radii)
        per_obstacle = surf.min(axis=0)
        m = obstacles.radii.shape[0]
        if k is not None and k < m:
            idx = np.argpartition(per_obstacle, k)[:k]
            idx = idx[np.argsort(per_obstacle[idx])]
        else:
            idx = np.argsort(per_obstacle)
        s = surf[:, idx].argmin(axis=0)
        point = p[s]
        diff = point - obstacles.centers[idx]
        normal = diff / np.maximum(np.sqrt((diff * diff).sum(1)), 1e-9)[:, None]
        return Clearance(per_obstacle[idx], point, normal, self.sphere_body[s], idx)

    def point_jacobian(self, point: np.ndarray, body: int) -> np.ndarray:
        """Linear Jacobian (3, n_joints) of a world point fixed to `body`, at the pose of the last `segments` call."""
        mujoco.mj_jac(self.model, self.data, self._jacp, None, point, int(body))
        return self._jacp[:, self.dof_adr]
