"""Default observation/action specs per embodiment (arm, amr, vehicle), used to build untrained models.

Training replaces the normalisation statistics with ones computed from data; names and shapes stay.
"""

from __future__ import annotations

from typing import Any

from physical_ai.policy.spec import (
    FeatureGroup,
    ImageSpec,
    InstructionSpec,
    ObservationSpec,
    PolicyConfig,
    TokenGroup,
)

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))

DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "type": "chunk_transformer", "d_model": 128, "n_heads": 4, "n_layers": 3, "ff_dim": 256,
    "image_channels": [16, 32, 64], "image_grid": 4,
}


def _group(names: tuple[str, ...], units: tuple[str, ...], scale: tuple[float, ...] | None = None) -> FeatureGroup:
    return FeatureGroup(names=names, units=units, mean=(0.0,) * len(names),
                        std=scale if scale is not None else (1.0,) * len(names))


def default_config(embodiment: str, name: str | None = None, architecture: dict[str, Any] | None = None
                   ) -> PolicyConfig:
    """A spec for `embodiment` ("arm", "amr" or "vehicle") with identity-ish normalisation."""
    arch = dict(architecture or DEFAULT_ARCHITECTURE)
    obstacle_feats = ("x", "y", "length", "width", "vx", "vy", "class")
    obstacle_units = ("m", "m", "m", "m", "m/s", "m/s", "1")
    if embodiment == "arm":
        state_names = (*(f"{j}.position" for j in ARM_JOINTS), "gripper.position",
                       *(f"{j}.velocity" for j in ARM_JOINTS))
        state_units = ("rad",) * 7 + ("m",) + ("rad/s",) * 7
        part_feats = ("x", "y", "z", "qx", "qy", "qz", "qw")
        obs = ObservationSpec(
            image=ImageSpec(shape=(3, 96, 96)),
            state=_group(state_names, state_units),
            parts=TokenGroup(max_count=4, features=_group(part_feats, ("m",) * 3 + ("1",) * 4)),
            obstacles=TokenGroup(max_count=8, features=_group(obstacle_feats, obstacle_units)),
            instruction=InstructionSpec(),
        )
        action = _group((*ARM_JOINTS, "gripper"), ("rad",) * 7 + ("m",), (1.0,) * 7 + (0.04,))
        dt, horizon = 0.05, 20
    elif embodiment == "amr":
        obs = ObservationSpec(
            state=_group(("odom.x", "odom.y", "odom.yaw", "odom.vx", "odom.wz"), ("m", "m", "rad", "m/s", "rad/s")),
            obstacles=TokenGroup(max_count=16, features=_group(obstacle_feats, obstacle_units)),
            instruction=InstructionSpec(),
        )
        action = _group(("linear_x", "angular_z"), ("m/s", "rad/s"))
        dt, horizon = 0.1, 10
    elif embodiment == "vehicle":
        obs = ObservationSpec(
            state=_group(("odom.vx", "odom.wz"), ("m/s", "rad/s")),
            obstacles=TokenGroup(max_count=16, features=_group(obstacle_feats, obstacle_units)),
            instruction=InstructionSpec(),
        )
        action = _group(("steering_angle", "speed"), ("rad", "m/s"), (0.25, 5.0))
        dt, horizon = 0.1, 10
    else:
        raise ValueError(f"embodiment: {embodiment!r} not one of 'arm', 'amr', 'vehicle'")
    return PolicyConfig(name=name or f"{embodiment}_untrained", embodiment=embodiment, dt=dt, chunk_length=horizon,
                        architecture=arch, observation=obs, action=action)
