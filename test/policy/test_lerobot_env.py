"""`physai lerobot setup|check|serve`: where the LeRobot environment lives, how it is found, and the server command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from physical_ai.policy import lerobot_env
from physical_ai.policy.lerobot_env import (
    LerobotEnvError,
    check_env,
    create_env,
    env_dir,
    env_python,
    requirements_hash,
    server_command,
)

ROOT = Path(__file__).resolve().parents[2]


def test_env_location_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("PHYSAI_LEROBOT_ENV", raising=False)
    assert env_dir() == ROOT / ".venv-lerobot"
    monkeypatch.setenv("PHYSAI_LEROBOT_ENV", str(tmp_path / "shared-env"))
    assert env_dir() == tmp_path / "shared-env"
    with pytest.raises(LerobotEnvError, match="create it with `physai lerobot setup`"):
        env_python()


def test_setup_is_a_no_op_on_a_complete_env(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / ".physai-lerobot-stamp").write_text(requirements_hash() + "\n")
    calls = []
    monkeypatch.setattr(lerobot_env.subprocess, "run", lambda *a, **k: calls.append(a))
    assert create_env(tmp_path) == tmp_path / "bin" / "python"
    assert calls == []  # no venv, no pip


def test_check_names_what_is_missing(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)  # our venv: no lerobot
    with pytest.raises(LerobotEnvError, match=r"incomplete .*No module named 'lerobot'.*physai lerobot setup"):
        check_env(tmp_path)


def test_server_sees_only_our_package(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    argv, env = server_command("/some/policy", port=8123, seed=3, path=tmp_path)
    assert argv[:3] == [str(tmp_path / "bin" / "python"), "-m", "physical_ai.policy.lerobot_server"]
    assert argv[argv.index("--port") + 1] == "8123" and argv[argv.index("--seed") + 1] == "3"
    import_root = Path(env["PYTHONPATH"])
    assert sorted(p.name for p in import_root.iterdir()) == ["physical_ai"]
    assert (import_root / "physical_ai").resolve() == ROOT / "physical_ai"


def test_cli_check_without_env_explains(tmp_path):
    done = subprocess.run([sys.executable, "-m", "physical_ai.cli", "lerobot", "check", "--path", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and "physai lerobot setup" in done.stderr
