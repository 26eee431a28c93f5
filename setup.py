"""Packaging for twister_jax.

Extras:
  atari   gymnasium + ale-py (ships the ROMs) + OpenCV (headless) for frame resizing.
  dmc     dm_control with a MuJoCo it supports (mujoco 4 breaks dm_control 1.0.50).
  reports rliable (needs pandas<3) + matplotlib for score aggregation and plots.
  test    pytest and everything the default test run imports (all suites, notebook runner).
  all     everything a user needs to train, evaluate, log and report.
"""
from setuptools import find_packages, setup

CORE = [
    "numpy>=1.26",
    "jax>=0.4.35",
    "flax>=0.10.2",  # flax.nnx with nnx.split/merge/state used functionally
    "optax>=0.2.3",
    "chex>=0.1.87",
    "orbax-checkpoint>=0.6.4",
    "ml_collections>=0.1.1",
    "absl-py>=2.0",
    "tensorboardX>=2.6",
    "tqdm>=4.60",
    "pillow>=9.0",  # PNG/GIF encoding for TensorBoard images and videos
]
ATARI = ["gymnasium>=1.0", "ale-py>=0.9", "opencv-python-headless>=4.8"]
DMC = ["dm_control>=1.0.20", "mujoco>=3.1,<4"]
REPORTS = ["rliable>=1.2.0", "pandas<3", "matplotlib>=3.7", "scipy>=1.10"]
TEST = ["pytest>=7.4", "chex>=0.1.87", "nbformat>=5.9", "nbclient>=0.10", "ipykernel>=6.0"]
ALL = sorted(set(ATARI + DMC + REPORTS))

setup(
    name="twister_jax",
    version="0.1.0",
    description="TWISTER (Transformer world model with AC-CPC) in JAX/Flax",
    packages=find_packages(include=["twister_jax", "twister_jax.*"]),
    package_data={"twister_jax": ["data/*.csv", "data/*.json"]},
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={
        "atari": ATARI,
        "dmc": DMC,
        "reports": REPORTS,
        "all": ALL,
        "test": sorted(set(TEST + ALL)),
    },
)
