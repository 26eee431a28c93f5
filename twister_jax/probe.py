"""World-model probe: does a trained world model's latent encode what it sees?

A world model can lower its image loss by drawing the average frame from a latent that ignores the
observation. Its agent then plans with a state that knows the actions taken but not the screen. The
losses logged during training do not show this; these numbers do, on frames from the run's own replay:

* ``distinct_codes``: how many different posterior modes (the argmax class of each of the S latents)
  the N frames get. 1 means every frame is encoded alike: the latent carries nothing about the frame.
* ``top_code_share``: the fraction of frames whose mode is the most common one.
* ``image_loss`` against ``mean_frame_loss``: the decoder's loss (sum over pixels of the squared error,
  the training loss) and the loss of drawing the batch's mean frame for every frame. A decoder that
  only knows the average scene cannot beat the second.
* ``acc_con`` against ``acc_con_chance`` (= 1 / N): AC-CPC's top-1 accuracy at offset 0.

A world model that sees can still leave its agent without a learning signal: the actor learns from
imagined rewards and the critic's values. The reward head is the world model's, so every probe has

* ``reward_corr``: correlation of the reward head's prediction (two-hot mean) with the real reward of
  the same frames, beside ``reward_real_mean`` / ``reward_pred_mean`` and, where rewards are sparse,
  ``reward_pred_at_reward`` / ``reward_pred_elsewhere`` (mean prediction at the frames with a nonzero
  real reward and at the others). A head near the base rate everywhere gives the actor nothing.

and with the actor and critic (`make_probe(spec, agent=True)`):

* ``value_mean`` / ``value_std``: the critic over the posterior states. A flat critic (small std)
  means the advantages the actor follows are noise.
* ``policy_entropy`` / ``policy_entropy_imagined``: the policy's entropy on the posterior states it
  acts on and on imagined states (H-step roll-outs from them, as in training); for discrete actions
  also ``top_action_share`` / ``top_action_share_imagined``, the greedy action's most common value's
  share. Unlike numbers say that the policy meets other states in imagination than when acting.

`make_probe(spec)` is the computation (one deterministic world-model loss pass, host-side statistics);
`load_run` reads a run's newest checkpoint and its replay (a solo run, or one run of a group). Commands:
experiments/world_model_probe.py, experiments/world_model_fit.py.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np


def code_stats(post_logits: np.ndarray) -> dict:
    """Posterior-mode statistics of N frames.

    Args:
      post_logits: ``(N, S, C)`` posterior logits.
    Returns:
      ``distinct_codes`` (int, 1..N) and ``top_code_share`` (float in (0, 1]).
    """
    modes = np.asarray(post_logits).argmax(-1)
    _, counts = np.unique(modes.reshape(modes.shape[0], -1), axis=0, return_counts=True)
    return {"distinct_codes": int(len(counts)), "top_code_share": float(counts.max() / modes.shape[0])}


def mean_frame_loss(images: np.ndarray) -> float:
    """The image loss of drawing the mean frame for every frame.

    Args:
      images: uint8 ``(N, H, W, 3)``.
    Returns:
      ``mean_n sum_pixels (mean_frame - x_n)^2`` on preprocessed frames (``x / 255 - 0.5``), the
      training loss's units.
    """
    x = np.asarray(images, np.float64) / 255.0 - 0.5
    return float(((x - x.mean(0)) ** 2).reshape(x.shape[0], -1).sum(-1).mean())


def reward_stats(pred: np.ndarray, real: np.ndarray) -> dict:
    """How well predicted rewards ``(N,)`` follow the real ones ``(N,)`` (see the module docstring).

    ``reward_corr`` is None when either is constant; ``reward_pred_at_reward`` / ``_elsewhere`` are
    given when 0 < (share of nonzero real rewards) < 0.5, else None.
    """
    pred, real = np.asarray(pred, np.float64).ravel(), np.asarray(real, np.float64).ravel()
    corr = float(np.corrcoef(pred, real)[0, 1]) if np.ptp(pred) > 0 and np.ptp(real) > 0 else None
    hit = real != 0
    sparse = 0 < hit.mean() < 0.5
    return {"reward_corr": corr, "reward_real_mean": float(real.mean()), "reward_pred_mean": float(pred.mean()),
            "reward_pred_at_reward": float(pred[hit].mean()) if sparse else None,
            "reward_pred_elsewhere": float(pred[~hit].mean()) if sparse else None}


def _top_share(raw: np.ndarray) -> float:
    """Share of the most common greedy (argmax) action among rows of ``raw (..., A)``."""
    counts = np.bincount(np.asarray(raw).reshape(-1, raw.shape[-1]).argmax(-1), minlength=raw.shape[-1])
    return float(counts.max() / counts.sum())


def _posterior_features(start) -> jax.Array:
    """``[flatten(stoch) ; deter]`` ``(N, F)`` of the posterior start states of a world-model pass."""
    n = start.stoch.shape[0]
    return jnp.concatenate([start.stoch.reshape(n, -1), start.deter], axis=-1)


def _signal_pass(spec, params: dict, aux: dict, key: jax.Array) -> dict:
    """Device half of the agent probe: critic and policy on the posterior states of a world-model pass
    (``aux`` of `world_model_loss`) and on imagined roll-outs from them."""
    from twister_jax import updates
    from twister_jax.distributions import twohot_mean
    from twister_jax.losses import actor_critic as ac_lib

    wm, actor, critic = spec.world_model(params["world_model"]), spec.actor(params["actor"]), spec.critic(params["critic"])
    feat = _posterior_features(aux["start"])
    _, traj, _ = updates.imagine_and_targets(wm, actor, critic, spec.dist, aux["start"], aux["start_cont"],
                                             ac_lib.init_return_norm(), key, spec.config)
    return {"value": twohot_mean(critic(feat), spec.config.model.bins_range)[..., 0],
            "raw": actor(feat), "raw_imagined": actor(traj["feat"][:, 1:])}


def make_probe(spec, agent: bool = False):
    """The probe of `spec`'s world model (and, with `agent`, of the agent's learning signal) as one
    function, its passes compiled once.

    Returns:
      ``probe(params, batch, key) -> dict``: frames, distinct_codes, top_code_share, post_entropy, kl,
      image_loss, mean_frame_loss, acc_con, acc_con_chance and the reward head's numbers (`reward_stats`)
      (plain floats / ints / None); with `agent` also the value and policy numbers of the module docstring. ``params`` is the world model's
      parameters, or with `agent` a `TrainState.params` dict. ``batch`` is a docs/interfaces.md §3 batch
      (image uint8 ``(B, T, 64, 64, 3)``); ``key`` draws the loss's noise (posterior samples, crops)
      and the imagination's.
    """
    from twister_jax.distributions import twohot_mean
    from twister_jax.losses import world_model as wm_loss

    c, m = spec.config, spec.config.model

    def passes(p, bt, nz, k):
        wm = spec.world_model(p["world_model"] if agent else p)
        _, aux = wm_loss.world_model_loss(wm, bt, nz, spec.loss_cfg, deterministic=True, return_outputs=True)
        reward = twohot_mean(wm.reward_logits(_posterior_features(aux["start"])), m.bins_range)[..., 0]
        return aux, reward, (_signal_pass(spec, p, aux, k) if agent else None)

    passes = jax.jit(passes)

    def probe(params, batch: dict, key: jax.Array) -> dict:
        batch = {k: jnp.asarray(v) for k, v in batch.items()}
        b, t = batch["image"].shape[:2]
        noise = wm_loss.draw_noise(key, b, t, m.stoch, m.discrete, crop_scale=tuple(c.augment.crop_scale),
                                   crop_ratio=tuple(c.augment.crop_ratio), image_size=tuple(c.env.image_size))
        aux, reward, signal = passes(params, batch, noise, jax.random.fold_in(key, 1))
        n = b * t
        out = {"frames": n}
        out.update(code_stats(np.asarray(aux["outputs"]["post_logits"]).reshape(n, m.stoch, m.discrete)))
        out.update(post_entropy=float(aux["metrics"]["post_entropy"]), kl=float(aux["metrics"]["kl"]),
                   image_loss=float(aux["losses"]["model_image"]),
                   mean_frame_loss=mean_frame_loss(np.asarray(batch["image"]).reshape((n,) + batch["image"].shape[2:])),
                   acc_con=float(aux["metrics"]["acc_con"]), acc_con_chance=1.0 / n)
        out.update(reward_stats(np.asarray(reward), np.asarray(batch["reward"]).reshape(-1)))
        if signal is not None:
            signal = jax.tree.map(np.asarray, signal)
            out.update(value_mean=float(signal["value"].mean()), value_std=float(signal["value"].std()),
                       policy_entropy=float(np.mean(spec.dist.entropy(signal["raw"]))),
                       policy_entropy_imagined=float(np.mean(spec.dist.entropy(signal["raw_imagined"]))))
            if spec.dist.discrete:
                out.update(top_action_share=_top_share(signal["raw"]),
                           top_action_share_imagined=_top_share(signal["raw_imagined"]))
        return out

    return probe


def load_run(workdir):
    """A run's config, newest checkpoint and replay, read-only: a solo run, or one run of a group
    (``<group>/seed_<s>``, whose checkpoint and replay live in the group's directory).

    Returns:
      ``(spec, step, params, ReplayBuffer)``: the run's own (solo) spec and its `TrainState.params`
      (``world_model``, ``actor``, ``critic``, ``slow_critic``).
    Raises:
      FileNotFoundError: no run directory, no readable checkpoint, or no replay to sample.
      ValueError: a group's own directory (name one of its runs instead).
    """
    from twister_jax import agent as agent_lib, checkpoint, runs
    from twister_jax.evaluate import load_config
    from twister_jax.replay import ReplayBuffer

    workdir = pathlib.Path(workdir)
    config = load_config(workdir)
    if runs.num_runs(config) > 1:
        raise ValueError(f"{workdir} holds a group of {runs.num_runs(config)} runs; probe one of them: "
                         + ", ".join(str(runs.run_dir(workdir, config, i)) for i in range(runs.num_runs(config))))
    home, group, index = workdir, None, 0      # where the checkpoints live; the group config, run index there
    parent = workdir.resolve().parent
    if not (workdir / "checkpoints").exists() and (parent / "config.json").exists() \
            and runs.num_runs(load_config(parent)) > 1:
        home, group = parent, load_config(parent)
        if int(config.seed) not in runs.seeds(group):
            raise ValueError(f"{workdir} has seed {config.seed}, not a run of the group in {parent} "
                             f"(seeds {runs.seeds(group)})")
        index = runs.seeds(group).index(int(config.seed))
    spec = agent_lib.AgentSpec.from_config(config)
    state = agent_lib.init_train_state(spec, jax.random.key(0))
    if group is not None:
        state = agent_lib.stack_runs([state] * runs.num_runs(group))
    replay = ReplayBuffer(int(config.replay_capacity), int(config.seq_len), int(config.env.num_envs),
                          tuple(config.env.image_size) + (3,), int(config.env.num_actions), seed=0)
    restored = checkpoint.Checkpointer(home, group or config, read_only=True).restore(
        checkpoint.abstract_like(state), None, replay if group is None else {runs.run_name(config.seed): replay},
        items=("train",), quarantine=False)
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {home / 'checkpoints'}")
    if replay.num_windows == 0:
        raise FileNotFoundError(f"the replay of checkpoint {restored.step} in {home} is empty")
    params = restored.train_state.params
    if group is not None:
        params = agent_lib.take_run(params, index)
    return spec, restored.step, params, replay


def probe_run(workdir, windows: int = 16, seed: int = 0) -> dict:
    """`make_probe(spec, agent=True)` on a run's newest checkpoint (a solo run or one run of a group) and
    `windows` windows of its replay (drawn by the replay's saved sampler: the same checkpoint gives the
    same windows); the noise from `seed`.

    Returns:
      ``{"step": checkpoint step, **probe}``. Raises as `load_run`.
    """
    spec, step, params, replay = load_run(workdir)
    return {"step": int(step), **make_probe(spec, agent=True)(params, replay.sample(windows), jax.random.key(seed))}
