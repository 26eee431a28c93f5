"""Environments (docs/original.md §1; docs/interfaces.md §3): Atari, DMC, the fake env, and the vector env.

No jax import anywhere in this package. The suite modules import their emulators lazily, so
`import twister_jax.envs` needs neither ale-py nor dm_control.
"""
from twister_jax.envs.base import SUITES, Env, GuardedEnv, TimeStep, make_env
from twister_jax.envs.vector import VectorEnv

__all__ = ["SUITES", "Env", "GuardedEnv", "TimeStep", "VectorEnv", "make_env"]
