"""World models that predict the outcome of candidate action chunks (physics rollout and learned)."""

from __future__ import annotations

from pathlib import Path

from physical_ai.world_model.api import WorldModel

WM_DIR = "world_model"  # a policy checkpoint's learned world model lives in <checkpoint>/world_model/
KINDS = ("physics", "learned")


def make_world_model(kind: str, checkpoint: str | Path, embodiment: str) -> WorldModel:
    """`physics` (MuJoCo rollout; the AMR scene) or `learned` (from <checkpoint>/world_model/).

    Raises:
        ValueError: unknown kind, or a physics model for an embodiment it does not model.
        OSError: the learned model's files are missing or unreadable.
    """
    if kind == "learned":
        from physical_ai.world_model.learned import LearnedWorldModel

        return LearnedWorldModel.load(Path(checkpoint) / WM_DIR)
    if kind == "physics":
        if embodiment != "amr":
            raise ValueError(f"physics world model: only the AMR scene is modelled so far, not {embodiment!r}")
        from physical_ai.world_model.physics import AmrPhysicsWorldModel

        return AmrPhysicsWorldModel()
    raise ValueError(f"world model {kind!r}: choose one of {KINDS}")
