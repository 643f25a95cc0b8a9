"""Runs in the LeRobot environment (not collected by pytest): builds a LeRobot policy and its reference actions.

    <lerobot env>/bin/python test/policy/lerobot_reference.py act|diffusion OUT_DIR --seed 0 --steps 24

Builds an ACT or Diffusion Policy with random weights from LeRobot's own classes (small sizes, no pretrained
backbone: nothing is downloaded), with non-trivial normalisation statistics, and saves it with its pre- and
post-processors as LeRobot does. Then it loads that folder back and runs LeRobot's own inference path
(`lerobot.common.control_utils.predict_action`, one call per control step, `select_action` inside) on a
sequence of random observations, seeded once before the first step. Writes OUT_DIR/reference.npz and
reference_constant.npz (see `reference`): the observations ("images" (T, H, W, 3) uint8, "states" (T, D)) and the
actions (T, D).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from lerobot.common.control_utils import predict_action
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.factory import get_policy_class, make_pre_post_processors

IMAGE_KEY = "observation.images.top"
STATE_KEY = "observation.state"
IMAGE_SHAPE = (3, 64, 64)
DIM = 8


def build(kind: str, out: Path) -> None:
    """A random-weight policy with its processors, saved with save_pretrained."""
    features_in = {IMAGE_KEY: PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE_SHAPE),
                   STATE_KEY: PolicyFeature(type=FeatureType.STATE, shape=(DIM,))}
    features_out = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(DIM,))}
    common = {"input_features": features_in, "output_features": features_out, "device": "cpu",
              "pretrained_backbone_weights": None}
    if kind == "act":
        from lerobot.policies.act.configuration_act import ACTConfig

        config = ACTConfig(chunk_size=10, n_action_steps=10, dim_model=64, n_heads=4, dim_feedforward=128,
                           n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1, **common)
    else:
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

        config = DiffusionConfig(n_obs_steps=2, horizon=16, n_action_steps=8, down_dims=(32, 64),
                                 diffusion_step_embed_dim=32, num_inference_steps=4, use_group_norm=True,
                                 spatial_softmax_num_keypoints=8, drop_n_last_frames=7, **common)
    rng = np.random.default_rng(7)
    stats = {
        IMAGE_KEY: {"mean": torch.full((3, 1, 1), 0.4), "std": torch.full((3, 1, 1), 0.2),
                    "min": torch.zeros(3, 1, 1), "max": torch.ones(3, 1, 1)},
        STATE_KEY: _stats(rng, 0.5),
        "action": _stats(rng, 1.5),
    }
    torch.manual_seed(11)
    policy = get_policy_class(kind)(config)
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    policy.save_pretrained(out)
    preprocessor.save_pretrained(out)
    postprocessor.save_pretrained(out)


def _stats(rng: np.random.Generator, scale: float) -> dict[str, torch.Tensor]:
    mean = rng.normal(0.0, scale, DIM)
    std = rng.uniform(0.2, 1.0, DIM) * scale
    return {"mean": torch.tensor(mean, dtype=torch.float32), "std": torch.tensor(std, dtype=torch.float32),
            "min": torch.tensor(mean - 2 * std, dtype=torch.float32),
            "max": torch.tensor(mean + 2 * std, dtype=torch.float32)}


def reference(out: Path, seed: int, steps: int) -> None:
    """LeRobot's own per-step inference on random observation sequences; saved beside the policy.

    reference.npz: a different observation every step; reference_constant.npz: the first one held (what a node
    sees from a robot standing still).
    """
    rng = np.random.default_rng(seed + 100)
    h, w = IMAGE_SHAPE[1:]
    images = rng.integers(0, 256, (steps, h, w, 3), dtype=np.uint8)
    states = rng.normal(0.0, 0.5, (steps, DIM)).astype(np.float32)
    run_lerobot(out, seed, images, states, out / "reference.npz")
    run_lerobot(out, seed, np.repeat(images[:1], steps, axis=0), np.repeat(states[:1], steps, axis=0),
                out / "reference_constant.npz")


def run_lerobot(out: Path, seed: int, images: np.ndarray, states: np.ndarray, path: Path) -> None:
    """Load the saved policy as a user would and run `predict_action` once per step, seeded once at the start."""
    config = PreTrainedConfig.from_pretrained(str(out))
    config.device = "cpu"
    policy = get_policy_class(config.type).from_pretrained(str(out), config=config)
    preprocessor, postprocessor = make_pre_post_processors(config, pretrained_path=str(out))
    torch.manual_seed(seed)
    policy.reset()
    actions = []
    for t in range(len(images)):
        action = predict_action({IMAGE_KEY: images[t].copy(), STATE_KEY: states[t].copy()}, policy,
                                torch.device("cpu"), preprocessor, postprocessor, use_amp=False, task="")
        actions.append(action.reshape(-1).numpy())
    np.savez(path, images=images, states=states, actions=np.stack(actions))


def main() -> None:
    """Build, then compute the reference."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("act", "diffusion"))
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    build(args.kind, out)
    reference(out, args.seed, args.steps)


if __name__ == "__main__":
    main()
