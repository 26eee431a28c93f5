"""Policy distributions of the actor (docs/original.md §5.7): unimix one-hot (Atari) and bounded Normal (DMC).

Both take the raw output of the policy MLP head (``linear_proj``) and never draw noise themselves
(docs/interfaces.md §4): a discrete sample is ``one_hot(argmax(log p + g))`` with Gumbel noise ``g``, a
continuous sample ``mean + eps * std`` with standard normal ``eps``. `draw_noise` draws either.

Shapes: ``...`` any batch shape (e.g. ``(N, H)``), A actions. Raw outputs are ``(..., A)`` logits
(discrete) or ``(..., 2A)`` (continuous: first half -> mean, second half -> std). Log-probabilities
and entropies are ``(...)``, summed over the action axis for the continuous policy. Everything is
computed in float32 (raw outputs are cast), as docs/original.md §6.2 asks of distributions.

`PolicyDist` bundles the family and its constants in a frozen (hashable) dataclass, so the train
step can close over it or pass it as a static argument.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from twister_jax import distributions

_LOG_SQRT_2PI = math.log(math.sqrt(2.0 * math.pi))


# --------------------------------------------------------------------------- bounded Normal (DMC)
def bounded_normal_params(raw: jax.Array, min_std: float = 0.1, max_std: float = 1.0):
    """Splits the DMC policy output into mean and std (docs/original.md §5.7).

    Args:
      raw: ``(..., 2A)`` output of the policy's output layer; first half ``m``, second half ``s``.
      min_std, max_std: std bounds (``model.policy_min_std`` / ``policy_max_std``).

    Returns:
      ``(mean, std)``, each ``(..., A)`` float32: ``mean = tanh(m)``,
      ``std = (max_std - min_std) * sigmoid(s + 2) + min_std``.
    """
    raw = jnp.asarray(raw, jnp.float32)
    m, s = jnp.split(raw, 2, axis=-1)
    mean = jnp.tanh(m)
    std = (max_std - min_std) * jax.nn.sigmoid(s + 2.0) + min_std
    return mean, std


def normal_log_prob(mean: jax.Array, std: jax.Array, action: jax.Array) -> jax.Array:
    """Log density of the independent Normal, summed over the last (action) axis: ``(..., A) -> (...)``.

    The Normal is untransformed and unclipped (docs/original.md §5.7): an action outside [-1, 1] gets its plain
    Normal density. Same expression as ``torch.distributions.Normal.log_prob``.
    """
    action = jnp.asarray(action, jnp.float32)
    var = jnp.square(std)
    per_dim = -jnp.square(action - mean) / (2.0 * var) - jnp.log(std) - _LOG_SQRT_2PI
    return jnp.sum(per_dim, axis=-1)


def normal_entropy(std: jax.Array) -> jax.Array:
    """Entropy of the independent Normal summed over actions: ``(..., A) -> (...)``."""
    return jnp.sum(0.5 + _LOG_SQRT_2PI + jnp.log(std), axis=-1)


def normal_sample(mean: jax.Array, std: jax.Array, eps: jax.Array) -> jax.Array:
    """Reparameterised sample ``mean + eps * std`` (no tanh, no clip: the env / TSSM clip)."""
    return mean + jnp.asarray(eps, jnp.float32) * std


# ----------------------------------------------------------------- unimix one-hot (Atari, discrete)
# Thin wrappers over the unimix one-hot categorical of `twister_jax.distributions` (docs/original.md §3.4, §5.7).
def discrete_log_probs(logits: jax.Array, unimix: float = 0.01) -> jax.Array:
    """``log p`` of the unimix categorical ``(1 - unimix) softmax(l) + unimix / A``: ``(..., A)``."""
    return distributions.unimix_log_probs(logits, unimix)


def discrete_probs(logits: jax.Array, unimix: float = 0.01) -> jax.Array:
    """Unimix probabilities ``(..., A)``."""
    return distributions.unimix_probs(logits, unimix)


def discrete_log_prob(logits: jax.Array, action: jax.Array, unimix: float = 0.01) -> jax.Array:
    """``log p(action)`` of a one-hot action ``(..., A)`` -> ``(...)`` (sum of one-hot x log p)."""
    return distributions.onehot_log_prob(logits, action, unimix)


def discrete_entropy(logits: jax.Array, unimix: float = 0.01) -> jax.Array:
    """Entropy ``-sum p log p`` of the unimix probabilities: ``(..., A) -> (...)``."""
    return distributions.onehot_entropy(logits, unimix)


def discrete_sample(logits: jax.Array, gumbel: jax.Array, unimix: float = 0.01) -> jax.Array:
    """Straight-through sample ``one_hot(argmax(log p + g)) + (p - sg(p))``: ``(..., A)``.

    The forward value is exactly one-hot. Nothing downstream uses its gradient (REINFORCE), but
    it is kept as in the original.
    """
    return distributions.onehot_sample(logits, gumbel, unimix)


def discrete_mode(logits: jax.Array, unimix: float = 0.01, st_logprob: bool = True) -> jax.Array:
    """Greedy action ``one_hot(argmax p)`` (first maximum on ties), ``(..., A)``.

    Carries the original's straight-through term (``log p - sg(log p)``, docs/quirks.md §10.5; ``p`` when
    `st_logprob` is False); its forward value is exactly one-hot, and acting uses no gradient.
    """
    return distributions.onehot_mode(logits, unimix, st_logprob)


# ------------------------------------------------------------------------------------ dispatcher
@dataclasses.dataclass(frozen=True)
class PolicyDist:
    """The actor's action distribution, either family, as pure functions of the raw head output.

    Attributes:
      num_actions: A.
      discrete: True for the unimix one-hot categorical (Atari, fake discrete), False for the
        bounded Normal (DMC, fake continuous).
      unimix: uniform mixture of the categorical (``model.unimix``).
      min_std, max_std: std bounds of the Normal (``model.policy_min_std`` / ``policy_max_std``).
      mode_st_logprob: straight-through term of the discrete mode on log-probabilities
        (``quirks.mode_straight_through_logprob``); forward values do not depend on it.
    """
    num_actions: int
    discrete: bool
    unimix: float = 0.01
    min_std: float = 0.1
    max_std: float = 1.0
    mode_st_logprob: bool = True

    @classmethod
    def from_config(cls, config) -> "PolicyDist":
        return cls(num_actions=int(config.env.num_actions), discrete=is_discrete(config),
                   unimix=float(config.model.unimix), min_std=float(config.model.policy_min_std),
                   max_std=float(config.model.policy_max_std),
                   mode_st_logprob=bool(config.quirks.mode_straight_through_logprob))

    @property
    def raw_size(self) -> int:
        """Width of the policy's output layer: A (discrete) or 2A (continuous)."""
        return self.num_actions if self.discrete else 2 * self.num_actions

    def draw_noise(self, key: jax.Array, batch_shape: tuple) -> jax.Array:
        """Gumbel(0, 1) (discrete) or standard normal (continuous) noise ``(*batch_shape, A)`` float32."""
        shape = tuple(batch_shape) + (self.num_actions,)
        if self.discrete:
            return jax.random.gumbel(key, shape, jnp.float32)
        return jax.random.normal(key, shape, jnp.float32)

    def sample(self, raw: jax.Array, noise: jax.Array) -> jax.Array:
        """Action ``(..., A)`` from given noise (see `draw_noise`)."""
        if self.discrete:
            return discrete_sample(raw, noise, self.unimix)
        mean, std = bounded_normal_params(raw, self.min_std, self.max_std)
        return normal_sample(mean, std, noise)

    def mode(self, raw: jax.Array) -> jax.Array:
        """Greedy action ``(..., A)``: one-hot argmax of the probabilities, or the Normal's mean."""
        if self.discrete:
            return discrete_mode(raw, self.unimix, self.mode_st_logprob)
        return bounded_normal_params(raw, self.min_std, self.max_std)[0]

    def log_prob(self, raw: jax.Array, action: jax.Array) -> jax.Array:
        """``log pi(action)`` ``(...)``."""
        if self.discrete:
            return discrete_log_prob(raw, action, self.unimix)
        mean, std = bounded_normal_params(raw, self.min_std, self.max_std)
        return normal_log_prob(mean, std, action)

    def entropy(self, raw: jax.Array) -> jax.Array:
        """Entropy ``(...)``."""
        if self.discrete:
            return discrete_entropy(raw, self.unimix)
        return normal_entropy(bounded_normal_params(raw, self.min_std, self.max_std)[1])


def is_discrete(config) -> bool:
    """Whether the config's env has discrete (one-hot) actions.

    Atari and the discrete fake env do; DMC and the fake env with ``env.task == "continuous"`` do not
    (docs/interfaces.md §2, §8).
    """
    suite = config.env.suite
    if suite == "atari":
        return True
    if suite == "dmc":
        return False
    return config.env.task != "continuous"
