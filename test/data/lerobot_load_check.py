"""Run by LeRobot's own interpreter (its environment, not ours): load a dataset with `LeRobotDataset`, iterate it.

    <lerobot python> lerobot_load_check.py <dataset root>

Prints one JSON line: frames, episodes, camera keys, per-key shapes of the first item, every frame's action sum and
the mean of each camera's pixels per episode (for comparison with our own reader), and the task of each episode.
"""

import json
import sys

import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = sys.argv[1]
ds = LeRobotDataset("local/physai_check", root=root, video_backend="pyav")
loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False, num_workers=0)
actions, pixel_sums, pixel_counts, tasks = [], {}, {}, {}
for batch in loader:
    actions.extend(batch["action"].sum(dim=-1).tolist())
    for key in ds.meta.camera_keys:
        for ep, img in zip(batch["episode_index"].tolist(), batch[key], strict=True):
            pixel_sums[f"{key}/{ep}"] = pixel_sums.get(f"{key}/{ep}", 0.0) + float(img.mean())
            pixel_counts[f"{key}/{ep}"] = pixel_counts.get(f"{key}/{ep}", 0) + 1
    for ep, task in zip(batch["episode_index"].tolist(), batch["task"], strict=True):
        tasks[str(ep)] = task
first = ds[0]
# a windowed query as policies make it (ACT / diffusion: future actions, past observations)
windowed = LeRobotDataset("local/physai_check", root=root, video_backend="pyav",
                          delta_timestamps={"action": [i / ds.fps for i in range(5)]})
print(json.dumps({"frames": len(ds), "episodes": ds.num_episodes, "fps": ds.fps, "camera_keys": ds.meta.camera_keys,
                  "shapes": {k: list(v.shape) for k, v in first.items() if hasattr(v, "shape")},
                  "action_sums": actions, "tasks": tasks,
                  "pixel_means": {k: pixel_sums[k] / pixel_counts[k] for k in pixel_sums},
                  "window_shape": list(windowed[0]["action"].shape),
                  "window_pad": windowed[len(windowed) - 1]["action_is_pad"].tolist()}))
