"""A LeRobot pretrained policy served over our policy protocol; runs in the LeRobot environment.

Started by `physai lerobot serve <policy_dir>` (physical_ai/policy/lerobot_env.py), never imported by the stack's
own venv. It computes the actions LeRobot's own inference path would (`lerobot.common.control_utils.
predict_action`: `prepare_observation_for_inference`, the checkpoint's saved pre-processor, the policy, its saved
post-processor), but returns the whole chunk of `n_action_steps` actions per request instead of one per call.

Wire format (msgpack + numpy, as physical_ai/policy/policy_server.py):
- metadata on connect: {"server": "lerobot", "policy_type", "input_features": {key: {"type", "shape"}},
  "action_dim", "n_obs_steps", "n_action_steps", "chunk_size"};
- request: every input feature by its LeRobot key (images (H, W, 3) uint8 or float in [0, 1], state (D,)), plus
  "task" (the instruction) for language-conditioned policies. A policy with n_obs_steps > 1 takes a history:
  (n_obs_steps, ...) per key, oldest first, one entry per control step (a single entry is repeated, as LeRobot
  fills its queues at the start of an episode). A missing feature or an unknown key is an error, never ignored;
- reply: {"actions": (n_action_steps, action_dim) float32}, post-processed (the dataset's units).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED_FILES = ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json")
TEXT_KEYS = ("task",)


class LerobotPolicyError(ValueError):
    """The policy folder or a request does not fit; the message names the file or key."""


class LerobotRunner:
    """One LeRobot policy with its saved pre- and post-processors."""

    def __init__(self, policy_dir: str | Path, device: str = "cpu") -> None:
        import torch
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.policies.utils import prepare_observation_for_inference

        directory = Path(policy_dir)
        missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
        if missing:
            raise LerobotPolicyError(f"{directory}: missing {missing}; save the policy and its processors with "
                                     "policy.save_pretrained(dir), preprocessor.save_pretrained(dir), "
                                     "postprocessor.save_pretrained(dir)")
        config = PreTrainedConfig.from_pretrained(str(directory))
        config.device = device
        if getattr(config, "temporal_ensemble_coeff", None) is not None:
            raise LerobotPolicyError(f"{directory}: temporal ensembling needs one policy call per control step; "
                                     "serve it with temporal_ensemble_coeff null (chunks are blended downstream)")
        self._torch = torch
        self._prepare = prepare_observation_for_inference
        self.config = config
        self.device = torch.device(device)
        self.policy = get_policy_class(config.type).from_pretrained(str(directory), config=config).eval()
        self.preprocessor, self.postprocessor = make_pre_post_processors(
            config, pretrained_path=str(directory), preprocessor_overrides={"device_processor": {"device": device}})
        action = config.output_features.get("action")
        if action is None:
            raise LerobotPolicyError(f"{directory}/config.json: output_features has no 'action'")
        self.action_dim = int(np.prod(action.shape))
        self.n_obs_steps = int(getattr(config, "n_obs_steps", 1))
        self.n_action_steps = int(getattr(config, "n_action_steps", getattr(config, "chunk_size", 1)))
        self.features = {key: {"type": str(feature.type.value), "shape": list(feature.shape)}
                         for key, feature in config.input_features.items()}

    def metadata(self) -> dict[str, Any]:
        """What a client needs to build requests (sent on connect)."""
        return {"server": "lerobot", "policy_type": self.config.type, "input_features": self.features,
                "action_dim": self.action_dim, "n_obs_steps": self.n_obs_steps,
                "n_action_steps": self.n_action_steps, "chunk_size": int(getattr(self.config, "chunk_size", 0))}

    def _history(self, request: dict[str, Any]) -> list[dict[str, np.ndarray]]:
        """Split the request into n_obs_steps raw observations (oldest first), checking every key."""
        unknown = sorted(set(request) - set(self.features) - set(TEXT_KEYS))
        if unknown:
            raise LerobotPolicyError(f"request keys {unknown} are not inputs of this {self.config.type} policy "
                                     f"(inputs: {sorted(self.features)})")
        steps: list[dict[str, np.ndarray]] = [{} for _ in range(self.n_obs_steps)]
        for key, feature in self.features.items():
            if key not in request:
                raise LerobotPolicyError(f"request has no {key!r} (the policy needs {sorted(self.features)})")
            value = np.asarray(request[key])
            shape = tuple(feature["shape"])
            single = (shape[1], shape[2], shape[0]) if feature["type"] == "VISUAL" and len(shape) == 3 else shape
            if value.shape == single:
                value = np.broadcast_to(value, (self.n_obs_steps, *single))
            if value.shape != (self.n_obs_steps, *single):
                raise LerobotPolicyError(f"{key}: shape {value.shape}, expected {single} or a history "
                                         f"{(self.n_obs_steps, *single)}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise LerobotPolicyError(f"{key}: non-finite values")
            for i in range(self.n_obs_steps):
                entry = value[i]
                steps[i][key] = np.array(entry, dtype=np.float32 if entry.dtype.kind == "f" else entry.dtype)
        return steps

    def infer(self, request: dict[str, Any]) -> dict[str, Any]:
        """One chunk: (n_action_steps, action_dim) float32 actions, post-processed."""
        torch = self._torch
        task = request.get("task")
        if task is not None and not isinstance(task, str):
            raise LerobotPolicyError(f"task: expected a string, got {type(task).__name__}")
        processed = []
        with torch.inference_mode():
            for raw in self._history(request):
                batch = self._prepare(raw, self.device, task, "")
                processed.append(self.preprocessor(batch))
            batch = dict(processed[-1])
            if self.n_obs_steps > 1:  # (B, n_obs_steps, ...), as LeRobot's queues stack them
                for key in self.features:
                    batch[key] = torch.stack([p[key] for p in processed], dim=1)
            self.policy.reset()  # no queue state between requests: the history is in the request
            actions = self.policy.predict_action_chunk(batch)[:, :self.n_action_steps]
            actions = self.postprocessor(actions[0])
        values = actions.detach().to("cpu").numpy().astype(np.float32).reshape(-1, self.action_dim)
        return {"actions": values}


def main(argv: list[str] | None = None) -> int:
    """Serve a LeRobot policy folder until SIGINT/SIGTERM."""
    import signal

    import torch

    from physical_ai.policy.policy_server import PolicyServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy_dir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        runner = LerobotRunner(args.policy_dir, args.device)
    except LerobotPolicyError as exc:
        raise SystemExit(f"lerobot_server: {exc}") from None
    if args.seed is not None:
        torch.manual_seed(args.seed)
    server = PolicyServer(runner.infer, args.host, args.port, metadata=runner.metadata())
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    print(f"serving LeRobot {runner.config.type} policy {args.policy_dir} on {server.uri} "
          f"(n_obs_steps {runner.n_obs_steps}, n_action_steps {runner.n_action_steps})", flush=True)
    server.start()
    try:
        while not stop:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
