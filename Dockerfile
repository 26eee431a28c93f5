# twister_jax on an NVIDIA GPU (CUDA 12 JAX) with headless MuJoCo rendering (EGL) for DMC.
#
# Build (from the repository root):
#   docker build -t twister_jax .
# Train (outputs in ./runs on the host; re-running the same command resumes):
#   docker run --gpus all --rm -v "$PWD/runs:/runs" twister_jax \
#     python -m twister_jax.train --config=configs/atari.py:alien --workdir=/runs/alien
# Evaluate the newest checkpoint of a run:
#   docker run --gpus all --rm -v "$PWD/runs:/runs" twister_jax \
#     python -m twister_jax.evaluate --workdir=/runs/alien --episodes=10 --video=/runs/alien/episode.mp4
# Tests inside the image:
#   docker run --rm twister_jax bash -c 'pip install -e ".[test]" && pytest -q'
#
# A thin layer over the README's install command (system deps script, then `pip install -e ".[all]"`),
# plus JAX's CUDA wheels; tests/test_cli.py checks that both install the same extras.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    MUJOCO_GL=egl \
    PYOPENGL_PLATFORM=egl \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics

# Python, git, and the headless EGL / OpenGL libraries MuJoCo renders with (no X server).
RUN apt-get update && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-pip git ca-certificates \
      libegl1 libgl1 libgles2 libglvnd0 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/twister_jax
COPY . .
RUN if [ -f scripts/install_system_deps.sh ]; then bash scripts/install_system_deps.sh; fi \
    && pip install -e ".[all]" \
    && pip install -U "jax[cuda12]"

CMD ["python", "-m", "twister_jax.train", "--help"]
