"""The robot's own body in its sensors' view: padded spheres over an arm's links, to drop points of the robot itself.

An overhead depth camera sees the arm that works under it. Without this filter the arm becomes an obstacle cluster
that the safety layer finds itself inside of, and a part in the gripper merges with it. The spheres are the
collision model the corrector uses (`CapsuleArm`, MuJoCo forward kinematics of the MJCF), grown by a padding for
calibration error, depth noise and joint-state timing. The gripper gets a larger padding: a part it holds moves
with it and is the robot's load, not an obstacle (MoveIt calls this an attached object).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np

from physical_ai.control.arm_collision import CapsuleArm


class BodySpheres:
    """Padded sphere cover of an arm's collision geoms for given joint positions (model frame)."""

    def __init__(self, arm: CapsuleArm, padding_m: float, hand_body: str = "", hand_padding_m: float = 0.0,
                 static_bodies: Sequence[str] = ()) -> None:
        """Set up.

        Args:
            arm: the capsule model (its MJCF and controlled joints).
            padding_m: added to every sphere radius [m].
            hand_body: body whose subtree (gripper, fingers) gets `hand_padding_m` instead; '' = none.
            hand_padding_m: padding of the hand's spheres [m], large enough to cover a held part.
            static_bodies: bodies of the robot that no controlled joint moves (its base): their geoms' bounding
                spheres at the model's rest pose are filtered too.

        Raises:
            ValueError: for a negative padding or a body that is not in the model.
        """
        if padding_m < 0 or hand_padding_m < 0:
            raise ValueError("paddings must be >= 0")
        self.arm = arm
        model = arm.model
        pad = np.full(arm.sphere_radius.shape, float(padding_m))
        if hand_body:
            root = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, hand_body)
            if root < 0:
                raise ValueError(f"hand body {hand_body!r} not in the model")
            in_hand = np.zeros(model.nbody, dtype=bool)
            in_hand[root] = True
            for b in range(root + 1, model.nbody):  # MuJoCo numbers bodies depth-first: a subtree follows its root
                in_hand[b] |= in_hand[model.body_parentid[b]]
            pad[in_hand[arm.sphere_body]] = float(hand_padding_m)
        self.radii = arm.sphere_radius + pad
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) for name in static_bodies]
        if any(i < 0 for i in ids):
            raise ValueError(f"static bodies {list(static_bodies)}: not all in the model")
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
        geoms = np.flatnonzero(np.isin(model.geom_bodyid, ids)) if ids else np.zeros(0, int)
        self.static_centres = data.geom_xpos[geoms].copy()
        self.static_radii = model.geom_rbound[geoms] + float(padding_m)

    @classmethod
    def from_file(cls, path: str | Path, joint_names: Sequence[str], geom_prefix: str = "", padding_m: float = 0.03,
                  hand_body: str = "", hand_padding_m: float = 0.0, static_bodies: Sequence[str] = ()) -> BodySpheres:
        """Load the arm's MJCF and build the padded cover (see `__init__`)."""
        return cls(CapsuleArm.from_file(path, joint_names, geom_prefix), padding_m, hand_body, hand_padding_m,
                   static_bodies)

    def at(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sphere centres (S, 3) in the model frame and radii (S,) for joint positions q (static ones last)."""
        centres = np.concatenate([self.arm.spheres(np.asarray(q, float)), self.static_centres])
        return centres, np.concatenate([self.radii, self.static_radii])


def outside_spheres(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Mask of the points (N, 3) that lie outside every sphere (centres (S, 3), radii (S,))."""
    keep = np.ones(len(points), dtype=bool)
    if len(points) == 0 or len(radii) == 0:
        return keep
    # Only points inside the spheres' bounding box can be inside one: most of a camera's view is skipped.
    lo = (centres - radii[:, None]).min(0)
    hi = (centres + radii[:, None]).max(0)
    near = np.flatnonzero(np.all((points >= lo) & (points <= hi), axis=1))
    if near.size:
        p = points[near].astype(np.float64)
        d2 = (p * p).sum(1)[:, None] - 2.0 * p @ centres.T + (centres * centres).sum(1)
        keep[near[(d2 <= radii * radii).any(axis=1)]] = False
    return keep
