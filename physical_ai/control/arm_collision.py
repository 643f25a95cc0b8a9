"""Capsule/sphere model of an arm's links from an MJCF's collision geoms, and its clearance to obstacles.

Forward kinematics comes from MuJoCo (`mj_kinematics` on a private MjData), so the link model is the same one the
simulator collides with. Each collision geom of a body moved by the controlled joints becomes a capsule (segment +
radius) that contains it: capsules exactly, cylinders as capsules, spheres as zero-length capsules, boxes as a
capsule along their longest axis, anything else as its bounding sphere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np


@dataclasses.dataclass
class Clearance:
    """Smallest distances between the arm's capsules and each obstacle (surface to surface).

    Attributes:
        distance: (M,) per obstacle, negative when penetrating.
        point: (M, 3) closest point on the arm's capsule axis, world frame.
        normal: (M, 3) unit vectors from the obstacle centre towards that point.
        body: (M,) MuJoCo body id owning the closest capsule.
    """

    distance: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    body: np.ndarray


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

    def clearance(self, q: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> Clearance:
        """Smallest surface distance from each obstacle sphere (centers (M, 3), radii (M,)) to the arm at q."""
        a, b = self.segments(q)
        ab = b - a                                                     # (G, 3)
        ab2 = np.maximum(np.einsum("gi,gi->g", ab, ab), 1e-12)
        ac = centers[None, :, :] - a[:, None, :]                        # (G, M, 3)
        t = np.clip(np.einsum("gmi,gi->gm", ac, ab) / ab2[:, None], 0.0, 1.0)
        closest = a[:, None, :] + t[..., None] * ab[:, None, :]
        diff = closest - centers[None, :, :]
        dist = np.sqrt(np.einsum("gmi,gmi->gm", diff, diff))
        surf = dist - self.radius[:, None] - radii[None, :]
        g = np.argmin(surf, axis=0)                                     # (M,)
        m = np.arange(centers.shape[0])
        d = dist[g, m]
        normal = diff[g, m] / np.maximum(d, 1e-9)[:, None]
        return Clearance(surf[g, m], closest[g, m], normal, self.body[g])

    def point_jacobian(self, point: np.ndarray, body: int) -> np.ndarray:
        """Linear Jacobian (3, n_joints) of a world point fixed to `body`, at the pose of the last `segments` call."""
        mujoco.mj_jac(self.model, self.data, self._jacp, None, point, int(body))
        return self._jacp[:, self.dof_adr]
