"""`physai lerobot ...`: LeRobot in its own Python environment, served over our policy-server protocol.

LeRobot 0.6 needs Python >= 3.12, torch < 2.12 and numpy < 2.3, so it cannot share the stack's venv (Python
3.11, torch 2.13, numpy 2.4). It gets an environment of its own, and a LeRobot policy runs there as a policy
server process (`physical_ai/policy/lerobot_server.py`) that the `lerobot` backend of policy_inference talks to:

    physai lerobot setup                       # create the environment (once; ~4 min, 7.5 GB: torch with CUDA)
    physai lerobot serve <policy_dir> --port 8001
    physai lerobot check                       # versions in the environment, or why it is unusable

The environment lives at `$PHYSAI_LEROBOT_ENV`, default `<checkout>/.venv-lerobot`; point several checkouts at
one with that variable. Python 3.12 comes from `--python`, `$PHYSAI_LEROBOT_PYTHON`, `python3.12` on PATH, or a
pyenv 3.12 install, in that order.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ENV_VARIABLE = "PHYSAI_LEROBOT_ENV"
PYTHON_VARIABLE = "PHYSAI_LEROBOT_PYTHON"
# Exact pins, tested together: LeRobot 0.6 with its dataset (parquet, video) and diffusion extras, the newest
# torch it allows that the tests ran with, and the wire-format packages our server module needs.
REQUIREMENTS = (
    "lerobot[dataset,diffusion]==0.6.0",
    "torch==2.9.1",
    "torchvision==0.24.1",
    "diffusers==0.35.2",
    "msgpack==1.2.4",
    "websockets==17.4",
)
STAMP_FILE = ".physai-lerobot-stamp"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # physical_ai/
SETUP_HINT = "create it with `physai lerobot setup` (or set PHYSAI_LEROBOT_ENV to an existing one)"


class LerobotEnvError(RuntimeError):
    """The LeRobot environment is missing or unusable; the message says how to create it."""


def env_dir() -> Path:
    """Where the LeRobot environment lives: $PHYSAI_LEROBOT_ENV, else `.venv-lerobot` beside the checkout."""
    configured = os.environ.get(ENV_VARIABLE, "")
    return Path(configured).expanduser() if configured else PACKAGE_DIR.parent / ".venv-lerobot"


def env_python(path: Path | None = None) -> Path:
    """The environment's interpreter; raises `LerobotEnvError` (with how to create it) when it is not usable."""
    root = path or env_dir()
    python = root / "bin" / "python"
    if not python.is_file():
        raise LerobotEnvError(f"no LeRobot environment at {root}: {SETUP_HINT}")
    return python


def find_python312(explicit: str = "") -> str:
    """A Python 3.12 interpreter: `explicit`, $PHYSAI_LEROBOT_PYTHON, python3.12 on PATH, or pyenv's 3.12."""
    candidates = [explicit, os.environ.get(PYTHON_VARIABLE, ""), shutil.which("python3.12") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python"), reverse=True)
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                     capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version == "True":
            return candidate
    raise LerobotEnvError("LeRobot 0.6 needs Python 3.12 and none was found: pass --python, set "
                          f"{PYTHON_VARIABLE}, or install one (e.g. `pyenv install 3.12`)")


def requirements_hash() -> str:
    """Identifies the pinned set, so `setup` re-runs pip only when it changed."""
    return hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()


def create_env(path: Path, python: str = "", quiet: bool = True) -> Path:
    """Create (or complete) the LeRobot environment at `path`; idempotent. Returns its interpreter."""
    stamp = path / STAMP_FILE
    if stamp.is_file() and stamp.read_text().strip() == requirements_hash() and (path / "bin" / "python").is_file():
        return path / "bin" / "python"
    if not (path / "bin" / "python").is_file():
        interpreter = find_python312(python)
        print(f"[lerobot] creating {path} with {interpreter}", flush=True)
        subprocess.run([interpreter, "-m", "venv", str(path)], check=True)
    print(f"[lerobot] installing {' '.join(REQUIREMENTS)} (torch from PyPI brings CUDA libraries: ~7.5 GB)",
          flush=True)
    command = [str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
               *(["-q"] if quiet else []), *REQUIREMENTS]
    if subprocess.run(command, env=_clean_env()).returncode != 0:
        raise LerobotEnvError(f"pip install into {path} failed (see above)")
    check_env(path)
    stamp.write_text(requirements_hash() + "\n")
    return path / "bin" / "python"


def check_env(path: Path | None = None) -> str:
    """Import LeRobot and the server's packages in the environment; return their versions, else raise."""
    python = env_python(path)
    probe = ("import lerobot, torch, numpy, diffusers, msgpack, websockets; "
             "print(f'lerobot {lerobot.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
             "diffusers {diffusers.__version__}')")
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=300, env=_clean_env())
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LerobotEnvError(f"the LeRobot environment at {python.parents[1]} is incomplete ({last}); "
                              "run `physai lerobot setup` to complete it")
    return done.stdout.strip()


def server_command(policy_dir: str | Path, host: str = "127.0.0.1", port: int = 8001, device: str = "cpu",
                   seed: int | None = None, path: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start the LeRobot policy server in the LeRobot environment.

    Only our `physical_ai` package is put on the server's import path (a symlink inside the environment, one
    per checkout), never the stack venv's site-packages, whose numpy and torch would shadow the environment's.
    """
    python = env_python(path)
    checkout = hashlib.sha256(str(PACKAGE_DIR).encode()).hexdigest()[:12]
    import_root = python.parents[1] / "physai-import" / checkout
    link = import_root / "physical_ai"
    if not link.is_symlink():
        import_root.mkdir(parents=True, exist_ok=True)
        link.symlink_to(PACKAGE_DIR, target_is_directory=True)
    argv = [str(python), "-m", "physical_ai.policy.lerobot_server", str(Path(policy_dir).resolve()),
            "--host", host, "--port", str(port), "--device", device]
    if seed is not None:
        argv += ["--seed", str(seed)]
    env = _clean_env()
    env["PYTHONPATH"] = str(import_root)
    return argv, env


def _clean_env() -> dict[str, str]:
    """This process's environment without what would put the stack venv's packages in the LeRobot one's way."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`physai lerobot setup | check | serve`."""
    sub = parser.add_subparsers(dest="action", required=True)
    setup = sub.add_parser("setup", help="create the LeRobot environment (Python 3.12, lerobot 0.6 and its pins)")
    setup.add_argument("--path", default=None, help=f"where (default ${ENV_VARIABLE} or .venv-lerobot)")
    setup.add_argument("--python", default="", help="a Python 3.12 interpreter to build it from")
    setup.add_argument("--verbose", action="store_true", help="show pip's output")
    check = sub.add_parser("check", help="print the environment's versions, or why it cannot be used")
    check.add_argument("--path", default=None)
    serve = sub.add_parser("serve", help="serve a LeRobot pretrained-policy folder over our policy protocol")
    serve.add_argument("policy_dir", help="folder written by LeRobot's save_pretrained (config.json, "
                                          "model.safetensors, policy_preprocessor.json, policy_postprocessor.json)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps)")
    serve.add_argument("--seed", type=int, default=None, help="seed torch once at start (reproducible sampling)")
    serve.add_argument("--path", default=None)


def run(args: argparse.Namespace) -> int:
    """Run the chosen action."""
    path = Path(args.path).expanduser() if args.path else env_dir()
    try:
        if args.action == "setup":
            python = create_env(path, args.python, quiet=not args.verbose)
            print(f"[lerobot] ready: {check_env(path)} ({python})")
        elif args.action == "check":
            print(f"{path}: {check_env(path)}")
        else:
            argv, env = server_command(args.policy_dir, args.host, args.port, args.device, args.seed, path)
            os.execve(argv[0], argv, env)  # the server replaces this process: signals reach it directly
    except LerobotEnvError as exc:
        print(f"physai lerobot: {exc}", file=sys.stderr)
        return 1
    return 0
