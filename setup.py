"""Packaging for twister_jax.

Version floors are the versions the code has been run and tested with (Python 3.11): it uses recent
APIs (e.g. flax's `nnx.List`, orbax-checkpoint's `args` API), and older releases are untested.
Every entry is imported by twister_jax/, configs/, experiments/ or tests/, except the two marked below.

Extras:
  atari   ale-py (ships the ROMs; driven directly, no gymnasium) + OpenCV (headless) for frame resizing.
  dmc     dm_control with a MuJoCo it supports (mujoco 4 breaks dm_control 1.0.50).
  reports rliable (needs pandas<3) + matplotlib + scipy for score aggregation and plots.
  video   OpenCV, for `.mp4` evaluation videos (`.gif` needs only Pillow, a core dependency).
  test    pytest and everything the default test run imports (all suites, notebook runner).
  all     everything a user needs to train, evaluate, log and report.
"""
from setuptools import find_packages, setup

CORE = [
    "numpy>=2.4.6",
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "chex>=0.1.92",
    "orbax-checkpoint>=0.12.8",
    "ml_collections>=1.1.0",
    "absl-py>=2.5.1",
    "tensorboardX>=2.6.5",
    "tqdm>=4.70.1",
    "pillow>=13.0.0",  # PNG/GIF encoding for TensorBoard images and videos
]
VIDEO = ["opencv-python-headless>=5.0.0.93"]
ATARI = ["ale-py>=0.12.1"] + VIDEO
DMC = ["dm_control>=1.0.50", "mujoco>=3.17.0,<4"]
# pandas is not imported here: a constraint on rliable's own dependency.
REPORTS = ["rliable>=1.2.0", "pandas<3", "matplotlib>=3.11.2", "scipy>=1.17.1"]
# ipykernel is not imported either: nbclient needs it to run the quickstart notebook's kernel.
TEST = ["pytest>=9.0.3", "pytest-xdist>=3.8.0", "nbformat>=5.11.1", "nbclient>=0.11.0", "ipykernel>=7.4.0"]
ALL = sorted(set(ATARI + DMC + REPORTS + VIDEO))

setup(
    name="twister_jax",
    version="0.1.0",
    description="TWISTER (Transformer world model with AC-CPC) in JAX/Flax",
    packages=find_packages(include=["twister_jax", "twister_jax.*"]),
    package_data={"twister_jax": ["data/*.csv", "data/*.json"]},
    python_requires=">=3.11",
    install_requires=CORE,
    extras_require={
        "atari": ATARI,
        "dmc": DMC,
        "reports": REPORTS,
        "video": VIDEO,
        "all": ALL,
        "test": sorted(set(TEST + ALL)),
    },
)
