"""Multi-embodiment policy vs the separate shipped policies: parameters and inference latency per embodiment.

BENCH multi_embodiment.params              learned parameters of models/multi_embodiment (trunk + all adapters)
BENCH multi_embodiment.separate_params     sum over models/amr_nav, models/arm_pick, models/vehicle_drive (baseline)
BENCH multi_embodiment.<emb>.p50_ms        Policy.infer (preprocessing + model), batch 1, one thread, the multi
                                           model's <emb> view, beside
BENCH multi_embodiment.<emb>.separate_p50_ms  the same for that embodiment's separate model, interleaved
Uses a trained multi-embodiment root given as the first argument (e.g. the output of `physai train` on datasets of
several embodiments); without one, a randomly initialised multi model built from the shipped models' specs (the
same architecture: parameter counts and latency do not depend on the weights; said below). `--smoke`: a short
pass for make test (the figures mean nothing).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPS = 300
SEPARATE = {"amr": "amr_nav", "arm": "arm_pick", "vehicle": "vehicle_drive"}


def observation(config, rng: np.random.Generator) -> dict:
    """A raw observation for `config`: state, 3-5 objects per token group, the instruction."""
    spec = config.observation
    obs: dict = {"instruction": "go"}
    if spec.state is not None:
        obs["state"] = rng.normal(size=len(spec.state.names))
    for group in ("obstacles", "parts"):
        tokens = getattr(spec, group)
        if tokens is not None:
            obs[group] = rng.normal(size=(int(rng.integers(3, 6)), len(tokens.features.names)))
    return obs


def main() -> int:
    """Print the BENCH lines."""
    import torch

    from physical_ai.policy.model import count_parameters, load_checkpoint
    from physical_ai.policy.multi_embodiment import MultiEmbodimentModel, save_multi_checkpoint
    from physical_ai.policy.policy import TorchPolicy
    from physical_ai.policy.spec import load_config

    torch.set_num_threads(1)
    args = [a for a in sys.argv[1:] if a != "--smoke"]
    reps = 3 if "--smoke" in sys.argv[1:] else REPS
    if args:
        multi_root = Path(args[0])
        print(f"multi model: {multi_root}")
    else:
        multi_root = Path(tempfile.mkdtemp(prefix="multi_random_"))
        configs = {e: load_config(ROOT / "models" / name) for e, name in SEPARATE.items()}
        save_multi_checkpoint(MultiEmbodimentModel(configs), configs, multi_root)
        print("multi model: randomly initialised from the shipped models' specs (architecture figures only)")
    embodiments = sorted(p.parent.name for p in multi_root.glob("*/config.json"))
    if not embodiments:
        print(f"multi_embodiment_bench: no <embodiment>/config.json under {multi_root}", file=sys.stderr)
        return 1
    full = MultiEmbodimentModel({e: load_config(multi_root / e) for e in embodiments})
    print(f"BENCH multi_embodiment.params {count_parameters(full)} count")
    separate = [e for e in embodiments if (ROOT / "models" / SEPARATE.get(e, "-") / "config.json").is_file()]
    print(f"BENCH multi_embodiment.separate_params "
          f"{sum(count_parameters(load_checkpoint(ROOT / 'models' / SEPARATE[e])[1]) for e in separate)} count "
          f"({'+'.join(SEPARATE[e] for e in separate)})")
    rng = np.random.default_rng(0)
    for e in separate:
        policies = {"multi": TorchPolicy(multi_root / e), "separate": TorchPolicy(ROOT / "models" / SEPARATE[e])}
        times: dict[str, list[float]] = {k: [] for k in policies}
        for _ in range(reps):
            obs = observation(policies["multi"].config, rng)
            for key, policy in policies.items():  # interleaved: both see the same machine load
                start = time.perf_counter()
                policy.infer(obs)
                times[key].append((time.perf_counter() - start) * 1e3)
        print(f"BENCH multi_embodiment.{e}.p50_ms {np.median(times['multi']):.3f} ms")
        print(f"BENCH multi_embodiment.{e}.separate_p50_ms {np.median(times['separate']):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
