#!/usr/bin/env bash
# System libraries for headless MuJoCo rendering (DMC pixels, twister_jax/envs/dmc.py).
# EGL (default, MUJOCO_GL=egl): libEGL + Mesa's EGL/DRI drivers (software llvmpipe without a GPU;
# NVIDIA's driver provides its own libEGL_nvidia). OSMesa (MUJOCO_GL=osmesa): pure software fallback.
# Debian/Ubuntu; run as root or with sudo. Checked on Debian 12 (bookworm).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
  libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgbm1 libglvnd0 libglx-mesa0 \
  libosmesa6
# Check rendering only where MuJoCo is already installed: README command (a) runs this script before
# `pip install`, and on a fresh machine mujoco arrives with the package's extras.
python3 - <<'PY' || { echo "MuJoCo still cannot render; see the error above" >&2; exit 1; }
import importlib.util, os, sys
if importlib.util.find_spec("mujoco") is None:
    print("mujoco is not installed yet: rendering is checked on first use (pip install -e '.[dmc]')")
    sys.exit(0)
os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco
m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
with mujoco.Renderer(m, 64, 64) as r:
    r.update_scene(mujoco.MjData(m))
    print("MuJoCo", os.environ["MUJOCO_GL"], "rendering OK:", r.render().shape)
PY
