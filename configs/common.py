"""Values shared by the Atari and DMC configs, and `validate()`.

Every value cites the section of `docs/original.md` it comes from; key names follow docs/interfaces.md §2.
Every `*_every` and `num_train_steps` counts gradient steps. This file is loaded by path from the
suite configs (`configs/atari.py`, `configs/dmc.py`, `configs/tiny.py`), not imported as a package.
"""
from __future__ import annotations

import ml_collections

DTYPES = ("float32", "bfloat16")
SUITES = ("atari", "dmc", "fake")
MATMUL_PRECISIONS = ("highest", "high", "default")


def get_base_config() -> ml_collections.ConfigDict:
    """The suite-independent defaults (the Atari values where the suites differ)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.num_seeds = 1              # ours: one process trains seeds seed..seed+num_seeds-1 (vmapped; docs/architecture.md §9)
    c.batch_size = 16            # docs/original.md §0, §8.1 (B, global over devices)
    c.seq_len = 64               # docs/original.md §0, §8.1 (L)
    c.imagination_horizon = 15   # docs/original.md §0, §5.2 (H)
    c.num_train_steps = 100_000  # docs/original.md §2.5: 50 epochs x 2,000
    c.env_step_every = 1         # docs/original.md §2.5: gradient steps between batched env steps
    c.prefill_windows = 100      # docs/original.md §2.4 (pre_fill_steps, counted in windows)
    c.replay_capacity = 1_000_000  # docs/original.md §2.2 (buffer_capacity, windows)
    c.replay_on_device = "auto"  # ours: frames also on the device, batches gathered there ("auto": one GPU/TPU)
    c.overlap_acting = False     # ours: act with the params before the gradient step, envs stepping during it
    c.log_every = 100            # docs/original.md §7.2 item 7
    c.figure_every = 2_000       # docs/original.md §7.4 (every epoch)
    c.checkpoint_every = 2_000   # docs/original.md §7.4 (every epoch)
    c.checkpoint_keep = 3        # docs/original.md §7.4 (keep last 3)
    c.eval_every = 10_000        # docs/original.md §1.3 (every 5 epochs)
    c.eval_episodes = 100        # docs/original.md §1.3
    c.eval_envs = 10             # ours: envs playing evaluation episodes in parallel (docs/interfaces.md §3)
    c.compute_dtype = "float32"  # docs/original.md §6.2 (Atari fp32); "bfloat16" is ours
    c.matmul_precision = "highest"  # "default" lets GPUs use TF32

    c.env = ml_collections.ConfigDict()
    c.env.suite = "atari"
    c.env.task = "alien"
    c.env.num_actions = 18       # docs/original.md §1.1 table
    c.env.action_repeat = 4      # docs/original.md §1.1
    c.env.num_envs = 1           # docs/original.md §1.1
    c.env.time_limit_frames = 108_000  # docs/original.md §1.1 item 4
    c.env.noop_max = 30          # docs/original.md §1.1
    c.env.sticky = 0.0           # docs/original.md §1.1 (no sticky actions)
    c.env.camera = 0             # docs/original.md §1.2 (DMC only)
    c.env.image_size = (64, 64)  # docs/original.md §1.1 / §1.2
    c.env.fast_render = False    # ours (DMC): shadows/multisampling off changes the pixels; off = original

    c.model = ml_collections.ConfigDict()
    c.model.hidden = 512         # docs/original.md §0 (D)
    c.model.dim_cnn = 32         # docs/original.md §3.3, §8.1
    c.model.stoch = 32           # docs/original.md §0 (S)
    c.model.discrete = 32        # docs/original.md §0 (V)
    c.model.blocks = 4           # docs/original.md §3.6.3
    c.model.heads = 8            # docs/original.md §3.6.4
    c.model.ff_ratio = 2         # docs/original.md §3.6.3
    c.model.context = 8          # docs/original.md §3.6.5 (C, att_context_left)
    c.model.max_pos = 2048       # docs/original.md §3.6.4 (max_pos_encoding)
    c.model.dropout = 0.1        # docs/original.md §3.6.3
    c.model.mlp_hidden = 512     # docs/original.md §3.2, §8.1
    c.model.mlp_layers = 2       # docs/original.md §3.2, §8.1
    c.model.unimix = 0.01        # docs/original.md §3.4
    c.model.bins = 255           # docs/original.md §3.7
    c.model.bins_range = 20.0    # docs/original.md §3.7
    c.model.ln_eps = 1e-3        # docs/original.md §3.2, §6.3
    c.model.transformer_ln_eps = 1e-6  # docs/original.md §3.6.3
    c.model.learn_initial = True       # docs/original.md §3.6.6
    c.model.contrastive_steps = 10     # docs/original.md §4 (K)
    c.model.contrastive_hidden = 512   # docs/original.md §4.3
    c.model.contrastive_layers = 2     # docs/original.md §4.3
    c.model.policy_min_std = 0.1       # docs/original.md §5.7
    c.model.policy_max_std = 1.0       # docs/original.md §5.7

    c.optim = ml_collections.ConfigDict()
    c.optim.world_model = ml_collections.ConfigDict(dict(lr=1e-4, eps=1e-8, clip=1000.0))  # docs/original.md §6.1
    c.optim.actor = ml_collections.ConfigDict(dict(lr=3e-5, eps=1e-5, clip=100.0))         # docs/original.md §6.1
    c.optim.critic = ml_collections.ConfigDict(dict(lr=3e-5, eps=1e-5, clip=100.0))        # docs/original.md §6.1

    c.loss = ml_collections.ConfigDict()
    c.loss.image = 1.0           # docs/original.md §3.8
    c.loss.reward = 1.0          # docs/original.md §3.8
    c.loss.cont = 1.0            # docs/original.md §3.8
    c.loss.kl_dyn = 0.5          # docs/original.md §3.8 (kl_prior)
    c.loss.kl_rep = 0.1          # docs/original.md §3.8 (kl_post)
    c.loss.free_nats = 1.0       # docs/original.md §3.8, docs/quirks.md §10.21
    c.loss.contrastive = 1.0     # docs/original.md §4.4 (loss_contrastive_scale)
    c.loss.contrastive_lambda = 0.75  # docs/original.md §4.4

    c.augment = ml_collections.ConfigDict()
    c.augment.crop_scale = (0.25, 1.0)        # docs/original.md §4.1
    c.augment.crop_ratio = (0.75, 4.0 / 3.0)  # docs/original.md §4.1

    c.ac = ml_collections.ConfigDict()
    c.ac.gamma = 0.997           # docs/original.md §5.3
    c.ac.lambda_ = 0.95          # docs/original.md §5.4
    c.ac.entropy = 3e-4          # docs/original.md §5.6
    c.ac.retnorm_decay = 0.99    # docs/original.md §5.5
    c.ac.retnorm_low = 0.05      # docs/original.md §5.5
    c.ac.retnorm_high = 0.95     # docs/original.md §5.5
    c.ac.retnorm_limit = 1.0     # docs/original.md §5.5
    c.ac.slow_critic_rate = 0.02  # docs/original.md §5.8
    c.ac.slow_critic_reg = 1.0    # docs/original.md §5.8

    # Quirks of the original (docs/quirks.md §10). True reproduces the original (the default);
    # False selects the corrected behaviour.
    c.quirks = ml_collections.ConfigDict()
    # docs/quirks.md §10.1: imagination start flags shifted by one position (the reset token of the current
    # episode is hidden from imagined tokens). False: flags aligned with the KV window as in observe.
    c.quirks.imagination_flag_shift = True
    # docs/original.md §3.6.5, docs/quirks.md §10.2: the episode mask is applied only when some is_first of the call is set, so
    # acting attends across an episode boundary for 7 steps. False: always apply the episode mask.
    c.quirks.episode_mask_gating = True
    # docs/quirks.md §10.8: during pre-fill the acting state keeps the policy's sample, not the executed random
    # action. False: keep the executed random action.
    c.quirks.prefill_policy_action = True
    # docs/quirks.md §10.5: the mode's straight-through term uses log-probabilities. False: probabilities.
    c.quirks.mode_straight_through_logprob = True
    return c


def _positive(config, keys):
    for key in keys:
        value = config
        for part in key.split("."):
            value = value[part]
        if not value > 0:
            raise ValueError(f"config.{key} must be positive, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Rejects inconsistent values, naming the key and the reason; returns the locked config.

    A batch that does not divide over the devices is caught later, by the sharding code.
    """
    _positive(config, [
        "num_seeds", "batch_size", "seq_len", "imagination_horizon", "num_train_steps", "env_step_every",
        "prefill_windows", "replay_capacity", "log_every", "figure_every", "checkpoint_every",
        "checkpoint_keep", "eval_every", "eval_episodes", "eval_envs", "env.num_actions",
        "env.action_repeat", "env.num_envs", "env.time_limit_frames", "model.hidden", "model.dim_cnn",
        "model.stoch", "model.discrete", "model.blocks", "model.heads", "model.ff_ratio",
        "model.context", "model.max_pos", "model.mlp_hidden", "model.mlp_layers", "model.bins",
        "model.bins_range", "model.contrastive_steps", "model.contrastive_hidden",
        "model.contrastive_layers",
    ])
    if config.compute_dtype not in DTYPES:
        raise ValueError(f"config.compute_dtype={config.compute_dtype!r} is not one of {DTYPES}")
    if config.matmul_precision not in MATMUL_PRECISIONS:
        raise ValueError(f"config.matmul_precision={config.matmul_precision!r} is not one of {MATMUL_PRECISIONS}")
    if not isinstance(config.overlap_acting, bool):
        raise ValueError(f"config.overlap_acting={config.overlap_acting!r} must be True or False")
    if config.replay_on_device not in ("auto", "on", "off"):
        raise ValueError(f"config.replay_on_device={config.replay_on_device!r} is not one of ('auto', 'on', 'off')")
    if config.env.suite not in SUITES:
        raise ValueError(f"config.env.suite={config.env.suite!r} is not one of {SUITES}")
    if config.seq_len <= config.model.contrastive_steps:
        raise ValueError(f"config.seq_len={config.seq_len} must exceed config.model.contrastive_steps="
                         f"{config.model.contrastive_steps} (AC-CPC needs a target k steps ahead)")
    if config.model.context > config.seq_len:
        raise ValueError(f"config.model.context={config.model.context} must not exceed config.seq_len="
                         f"{config.seq_len} (docs/original.md §8.1: att_context_left <= L)")
    if config.model.hidden % config.model.heads:
        raise ValueError(f"config.model.hidden={config.model.hidden} must divide by config.model.heads="
                         f"{config.model.heads}")
    if config.eval_envs > config.eval_episodes:
        raise ValueError(f"config.eval_envs={config.eval_envs} exceeds config.eval_episodes="
                         f"{config.eval_episodes}: an env would have no episode to play")
    if not 0.0 <= config.model.dropout < 1.0:
        raise ValueError(f"config.model.dropout={config.model.dropout} must be in [0, 1)")
    if not 0.0 <= config.env.sticky < 1.0:
        raise ValueError(f"config.env.sticky={config.env.sticky} must be in [0, 1)")
    lo, hi = config.augment.crop_scale
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"config.augment.crop_scale={tuple(config.augment.crop_scale)} must satisfy 0 < lo <= hi <= 1")
    if config.replay_capacity < config.prefill_windows:
        raise ValueError(f"config.replay_capacity={config.replay_capacity} is below config.prefill_windows="
                         f"{config.prefill_windows}")
    config.lock()
    return config
