"""World models that predict the outcome of candidate action chunks (physics rollout and learned)."""

from __future__ import annotations

from pathlib import Path

from physical_ai.world_model.api import WorldModel

WM_DIR = "world_model"  # a policy checkpoint's learned world model lives in <checkpoint>/world_model/
KINDS = ("physics", "learned")


def make_world_model(kind: str, checkpoint: str | Path, embodiment: str, materials: str = "normal") -> WorldModel:
    """`physics` (MuJoCo rollout; the AMR scene, the arm cell) or `learned` (from <checkpoint>/world_model/).

    `materials`: the arm cell's part catalogue the physics rollout assumes ("normal" | "hard").

    Raises:
        ValueError: unknown kind, or a physics model for an embodiment it does not model.
        OSError: the learned model's files are missing or unreadable.
    """
    if kind == "learned":
        from physical_ai.world_model.learned import LearnedWorldModel

        return LearnedWorldModel.load(Path(checkpoint) / WM_DIR)
    if kind == "physics":
        if embodiment == "amr":
            from physical_ai.world_model.physics import AmrPhysicsWorldModel

            return AmrPhysicsWorldModel()
        if embodiment == "arm":
            from physical_ai.world_model.arm_physics import ArmPhysicsWorldModel

            return ArmPhysicsWorldModel(materials=materials)
        raise ValueError(f"physics world model: the AMR scene and the arm cell are modelled, not {embodiment!r}")
    raise ValueError(f"world model {kind!r}: choose one of {KINDS}")
