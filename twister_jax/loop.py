"""The training program: `run(config, workdir)` (spec section 7, INTERFACES §3, §6).

Schedule (spec 2.4, 2.5, 7.1-7.4), gradient steps counted by `step` (completed steps):

1. Start-up: build the agent, the train envs (`env.num_envs`), the replay buffer; restore the newest
   readable checkpoint of `<workdir>/checkpoints` if there is one (else reset the envs and append each
   env's reset record to its stream).
2. Pre-fill: batched env steps until the replay holds `prefill_windows` windows. The policy runs (to
   fill the acting state's KV cache) but the executed actions are uniform random; the acting state
   keeps the policy's sample (`quirks.prefill_policy_action`, spec 10.8) or the executed action.
3. Loop: sample a batch, `train_step` with key `fold_in(base, TRAIN)` (the agent folds in its step), `step += 1`; one
   batched env step when `step % env_step_every == 0`; a log row every `log_every`; then, at epoch
   ends (spec 7.4 order): evaluation every `eval_every` and at the last step, checkpoint every
   `checkpoint_every` and at the last step, figures every `figure_every`.
4. End: `done.json` written last, atomically.

Keys and host randomness (INTERFACES §4): one base key `jax.random.key(seed)`; per purpose a
`fold_in` (init, train, act, eval, figures), then `fold_in` with the step (train, figures), the
batched env-step counter (act) or the evaluation step and its env-step counter (eval). Host random
actions come from a NumPy PCG64 generator seeded from `seed`; env seeds from `SeedSequence(seed, ...)`.
Everything the next step depends on is in the checkpoint (see checkpoint.py), so a run killed right
after a checkpoint and resumed writes the same rows as one never interrupted (CPU, float32).

Choices not in the spec: metrics.jsonl rows hold the mean of every train_step metric over the
gradient steps since the previous row; episode statistics of the training envs are the mean over the
episodes finished since the previous row (`episode_reward_total`, `episode_steps` in frames) plus the
running count `episodes`. Evaluation episodes are seeded by (seed, episode index), the same seeds at
every evaluation (common random numbers across evaluations). SIGTERM/SIGINT: the current gradient
step finishes, a checkpoint is saved, the program returns normally (exit status 0, no done.json); an
evaluation interrupted that way is redone on resume.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import signal
import sys
import time
from typing import Optional

import numpy as np

from twister_jax.acting import (
    ACT, EVAL, FIGURES, INIT, TRAIN, EnvGroup, env_actions, env_seed, random_actions, run_episodes, stack_obs)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- files
def atomic_write_json(path, obj) -> None:
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=_json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


# --------------------------------------------------------------------------------------- outputs
class Outputs:
    """metrics.jsonl, scores.jsonl and TensorBoard via `twister_jax.writers` (chief process only).

    On resume every writer drops what was logged after `resume_step` (JSONL rows with a larger
    `step`; TensorBoard events through purge_step). Figures from `agent.figures`: an entry whose
    name contains "video" is a video ((T, H, W, C) or (N, T, H, W, C) uint8), any other an image
    ((H, W, C), or (N, H, W, C) shown as a grid).
    """

    def __init__(self, workdir: pathlib.Path, resume_step: int, *, enabled: bool = True):
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        from twister_jax import writers
        self.metrics_w = writers.JsonlWriter(workdir / "metrics.jsonl", resume_step=resume_step)
        self.scores_w = writers.JsonlWriter(workdir / "scores.jsonl", resume_step=resume_step)
        try:
            self.tb = writers.TensorBoardWriter(workdir / "tb", resume_step=resume_step)
        except Exception as exc:  # noqa: BLE001 - TensorBoard is optional
            log.warning("TensorBoard writer unavailable: %s", exc)

    def metrics(self, row: dict) -> None:
        if not self.enabled:
            return
        step = row["step"]
        self.metrics_w.write_scalars(step, {k: v for k, v in row.items() if k != "step"})
        if self.tb is not None:
            self.tb.write_scalars(step, {f"train/{k}": v for k, v in row.items() if k != "step"})

    def scores(self, row: dict) -> None:
        if not self.enabled:
            return
        step = row["step"]
        self.scores_w.write_scalars(step, {k: v for k, v in row.items() if k != "step"})
        if self.tb is not None:
            self.tb.write_scalars(step, {f"eval/{k}": row[k] for k in ("return_mean", "return_std", "length_mean")})
            self.tb.flush()

    def figures(self, step: int, figures: dict) -> None:
        if not self.enabled or self.tb is None:
            return
        videos = {f"figures/{k}": v for k, v in figures.items() if "video" in k}
        images = {f"figures/{k}": v for k, v in figures.items() if "video" not in k}
        if images:
            self.tb.write_images(step, images)
        if videos:
            self.tb.write_videos(step, videos)
        self.tb.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        for w in (self.metrics_w, self.scores_w, self.tb):
            if w is not None:
                w.close()


# ------------------------------------------------------------------------------------------ loop
class Trainer:
    """Holds the whole run's state; `run()` drives it. See the module docstring."""

    def __init__(self, config, workdir, *, agent=None, progress: Optional[bool] = None):
        import jax
        from twister_jax import checkpoint
        from twister_jax.replay import ReplayBuffer

        self.config = config
        self.workdir = pathlib.Path(workdir)
        self.t_start = time.time()
        jax.config.update("jax_threefry_partitionable", True)
        if config.matmul_precision:
            jax.config.update("jax_default_matmul_precision", config.matmul_precision)
        checkpoint.check_workdir_compatible(self.workdir, config)
        self.is_chief = jax.process_index() == 0
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.is_chief:
            atomic_write_json(self.workdir / "config.json", checkpoint.config_to_dict(config))
        if agent is None:
            from twister_jax import agent as agent_lib
            agent = agent_lib.make_agent(config)
        self.agent = agent
        self.n = int(config.env.num_envs)
        self.num_actions = int(config.env.num_actions)
        self.base_key = jax.random.key(int(config.seed))
        self.keys = {p: jax.random.fold_in(self.base_key, p) for p in (INIT, TRAIN, ACT, EVAL, FIGURES)}
        pid = jax.process_index()
        self.local_batch = int(config.batch_size) // jax.process_count()
        self.replay = ReplayBuffer(int(config.replay_capacity), int(config.seq_len), self.n,
                                   tuple(config.env.image_size) + (3,), self.num_actions,
                                   seed=env_seed(config.seed, 100, pid))
        self.rng = np.random.Generator(np.random.PCG64(env_seed(config.seed, 101, pid)))
        self.envs = EnvGroup(config.env, [env_seed(config.seed, 102, pid, i) for i in range(self.n)])
        if self.envs.num_actions is not None and int(self.envs.num_actions) != self.num_actions:
            self.envs.close()
            raise ValueError(f"config.env.num_actions={self.num_actions} but the {config.env.suite} env "
                             f"{config.env.task!r} has {self.envs.num_actions} actions")
        self.eval_envs = None
        self.ckpt = checkpoint.Checkpointer(self.workdir, config)
        self.train_state = agent.init_state(self.keys[INIT])
        self.act_state = agent.init_act_state(self.n)
        # counters
        self.step = 0
        self.env_steps = 0
        self.act_calls = 0
        self.episodes = 0
        self.last_eval_step = -1
        self.last_score = None
        self.ep_return = np.zeros(self.n)
        self.ep_length = np.zeros(self.n, np.int64)
        self.pending_metrics: list = []
        self.pending_episodes: list = []
        self.last_batch = None
        self.stop_requested = False
        self._restore()
        self.out = Outputs(self.workdir, self.step, enabled=self.is_chief)
        self.progress_enabled = progress
        self.t_last_log, self.step_last_log, self.env_last_log = time.time(), self.step, self.env_steps

    # --------------------------------------------------------------------------- host state
    def host_state(self) -> dict:
        import jax
        return {
            "counters": {"step": self.step, "env_steps": self.env_steps, "act_calls": self.act_calls,
                         "episodes": self.episodes, "last_eval_step": self.last_eval_step},
            "last_score": self.last_score,
            "rng": self.rng.bit_generator.state,
            "obs": list(self.obs),
            "ep_return": self.ep_return.copy(), "ep_length": self.ep_length.copy(),
            "pending_metrics": [jax.device_get(m) for m in self.pending_metrics],
            "pending_episodes": list(self.pending_episodes),
            "env_states": self.envs.get_states(),
        }

    def _restore(self) -> None:
        from twister_jax import checkpoint
        r = self.ckpt.restore(checkpoint.abstract_like(self.train_state), checkpoint.abstract_like(self.act_state),
                              self.replay)
        if r is None:
            import shutil
            if self.ckpt.replay_dir.exists():  # chunks of a run killed before its first checkpoint
                shutil.rmtree(self.ckpt.replay_dir)
            self.obs = list(self.envs.reset_all())
            for i, t in enumerate(self.obs):
                self._add_reset_record(i, t)
            return
        self.train_state, self.act_state = r.train_state, r.act_state
        h = r.host
        c = h["counters"]
        self.step, self.env_steps, self.act_calls = c["step"], c["env_steps"], c["act_calls"]
        self.episodes, self.last_eval_step = c["episodes"], c["last_eval_step"]
        self.last_score = h["last_score"]
        self.rng.bit_generator.state = h["rng"]
        self.obs = list(h["obs"])
        self.ep_return, self.ep_length = h["ep_return"], h["ep_length"]
        self.pending_metrics = h["pending_metrics"]
        self.pending_episodes = h["pending_episodes"]
        self.envs.set_states(h["env_states"])
        print(f"resumed from checkpoint step {self.step} ({self.env_steps} env steps)", file=sys.stderr, flush=True)

    def save(self) -> None:
        if self.ckpt.save(self.step, self.train_state, self.act_state, self.host_state(), self.replay,
                          meta={"env_steps": self.env_steps, "frames": self.frames}):
            log.info("checkpoint saved at step %d", self.step)

    @property
    def frames(self) -> int:
        return int(self.env_steps) * int(self.config.env.action_repeat)

    # ----------------------------------------------------------------------------- acting
    def _add_reset_record(self, i, t) -> None:
        self.replay.add(i, t.image, np.zeros(self.num_actions, np.float32), 0.0, True, False)

    def env_step(self) -> None:
        """One batched env step of the training envs (spec 7.3)."""
        import jax
        image, is_first = stack_obs(self.obs)
        key = jax.random.fold_in(self.keys[ACT], self.act_calls)
        self.act_state, action = self.agent.policy_step(self.train_state.params, self.act_state, image, is_first,
                                                        key, greedy=False)
        action = np.asarray(action, np.float32)
        if self.replay.num_windows < self.config.prefill_windows:  # spec 7.3 item 4, 10.8
            action = random_actions(self.config, self.rng, self.n)
            if not self.config.quirks.prefill_policy_action:
                field = "prev_action" if hasattr(self.act_state, "prev_action") else "action"
                self.act_state = self.act_state.replace(**{field: jax.numpy.asarray(action)})
        env_act, stored = env_actions(self.config, action)
        out = self.envs.step(env_act)
        self.act_calls += 1
        self.env_steps += self.n
        for i, t in enumerate(out):
            self.replay.add(i, t.image, stored[i], float(t.reward), False, bool(t.is_terminal))
            self.ep_return[i] += float(t.reward)
            self.ep_length[i] += 1
            if t.is_last:
                self.episodes += 1
                self.pending_episodes.append((float(self.ep_return[i]),
                                              int(self.ep_length[i]) * int(self.config.env.action_repeat)))
                self.ep_return[i], self.ep_length[i] = 0.0, 0
                t = self.envs.reset(i)
                self._add_reset_record(i, t)
            self.obs[i] = t

    # --------------------------------------------------------------------------- training
    def sample_batch(self):
        import jax
        batch = self.replay.sample(self.local_batch)
        if jax.process_count() > 1:
            from twister_jax import sharding
            mesh = getattr(self.agent, "mesh", None) or sharding.make_mesh()
            batch = sharding.global_batch(batch, mesh)
        return batch

    def train_step(self) -> None:
        batch = self.sample_batch()
        # the agent folds in its own step counter (state.step == self.step), INTERFACES §4
        self.train_state, metrics = self.agent.train_step(self.train_state, batch, self.keys[TRAIN])
        self.last_batch = batch
        self.pending_metrics.append(metrics)
        self.step += 1

    def log_row(self) -> dict:
        import jax
        now = time.time()
        row = {"step": self.step, "env_steps": self.env_steps, "frames": self.frames}
        ms = jax.device_get(self.pending_metrics)
        if ms:
            for k in ms[0]:
                row[k] = float(np.mean([np.float64(m[k]) for m in ms]))
        row["episodes"] = self.episodes
        if self.pending_episodes:
            row["episode_reward_total"] = float(np.mean([e[0] for e in self.pending_episodes]))
            row["episode_steps"] = float(np.mean([e[1] for e in self.pending_episodes]))
        row["replay_windows"] = int(self.replay.num_windows)
        dt = max(now - self.t_last_log, 1e-9)
        row["sps"] = (self.step - self.step_last_log) / dt
        row["env_sps"] = (self.env_steps - self.env_last_log) / dt
        row["wall_time"] = now - self.t_start
        self.t_last_log, self.step_last_log, self.env_last_log = now, self.step, self.env_steps
        self.pending_metrics, self.pending_episodes = [], []
        self.out.metrics(row)
        return row

    # ------------------------------------------------------------------------- evaluation
    def evaluate(self) -> Optional[dict]:
        import jax
        c = self.config
        if self.eval_envs is None:
            self.eval_envs = EnvGroup(c.env, [env_seed(c.seed, EVAL, 10_000 + i) for i in range(c.eval_envs)])
        t0 = time.time()
        key = jax.random.fold_in(self.keys[EVAL], self.step)
        res = run_episodes(self.agent, self.train_state.params, c, self.eval_envs, int(c.eval_episodes), key,
                           should_stop=lambda: self.stop_requested)
        if res is None:
            return None
        r = np.asarray(res["returns"], np.float64)
        row = {"step": self.step, "env_steps": self.env_steps, "frames": self.frames,
               "return_mean": float(r.mean()), "return_std": float(r.std()), "episodes": int(r.size),
               "returns": [float(x) for x in r], "length_mean": float(np.mean(res["lengths"])),
               "wall_time": time.time() - t0}
        self.out.scores(row)
        self.last_eval_step = self.step
        self.last_score = row["return_mean"]
        return row

    def figures(self) -> None:
        import jax
        fn = getattr(self.agent, "figures", None)
        if fn is None or self.last_batch is None or not self.is_chief:
            return
        try:
            figs = fn(self.train_state.params, self.last_batch, jax.random.fold_in(self.keys[FIGURES], self.step))
            self.out.figures(self.step, jax.device_get(figs))
        except Exception as exc:  # noqa: BLE001 - diagnostics must not end a run
            log.warning("figures failed at step %d: %s", self.step, exc)

    # ------------------------------------------------------------------------------- main
    def _on_signal(self, signum, frame):  # noqa: ARG002
        if self.stop_requested:  # second signal: give up at once
            raise KeyboardInterrupt
        self.stop_requested = True
        print(f"received signal {signum}: saving a checkpoint and stopping after the current step",
              file=sys.stderr, flush=True)

    def _epoch_end(self) -> None:
        c = self.config
        last = self.step >= c.num_train_steps
        if (self.step % c.eval_every == 0 or last) and self.last_eval_step != self.step:
            row = self.evaluate()
            if row is not None:
                self.progress.write(f"[eval] step {self.step}: return {row['return_mean']:.2f} "
                                    f"+- {row['return_std']:.2f} over {row['episodes']} episodes")
        if self.stop_requested:
            return
        if self.step % c.checkpoint_every == 0 or last:
            self.save()
        if self.step % c.figure_every == 0:
            self.figures()

    def run(self) -> dict:
        from twister_jax.progress import Progress
        c = self.config
        done_path = self.workdir / "done.json"
        self.progress = Progress(int(c.num_train_steps), self.step, tty=self.progress_enabled)
        handlers = {}
        import threading
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            if self.replay.num_windows < c.prefill_windows:
                self.progress.write(f"[prefill] collecting {c.prefill_windows} windows of {c.seq_len} steps "
                                    f"before the first gradient step")
            while self.replay.num_windows < c.prefill_windows and not self.stop_requested:
                self.env_step()
                self.progress.update(self.step, env_steps=self.env_steps, phase="prefill")
            self.progress.update(self.step, env_steps=self.env_steps, phase="train")
            self.progress.restart_clock()
            if self.step > 0 and (self.step % c.eval_every == 0 or self.step >= c.num_train_steps) \
                    and self.last_eval_step != self.step:
                self._epoch_end()  # an evaluation interrupted by a signal is redone
            while self.step < c.num_train_steps and not self.stop_requested:
                self.train_step()
                if self.step % c.env_step_every == 0:
                    self.env_step()
                loss = self.log_row().get("loss") if self.step % c.log_every == 0 else None
                self.progress.update(self.step, env_steps=self.env_steps, loss=loss, score=self.last_score)
                self._epoch_end()
            if self.stop_requested:
                self.save()
                self.progress.write(f"stopped at step {self.step}; checkpoint saved. Re-run the same "
                                    f"command to resume.")
                return {"stopped": True, "step": self.step}
            result = {"step": self.step, "env_steps": self.env_steps, "frames": self.frames,
                      "return_mean": self.last_score, "wall_time": time.time() - self.t_start}
            self.ckpt.wait()
            if self.is_chief:
                atomic_write_json(done_path, result)
            return result
        finally:
            self.progress.close()
            self.ckpt.close()
            self.out.close()
            self.envs.close()
            if self.eval_envs is not None:
                self.eval_envs.close()
            for sig, h in handlers.items():
                signal.signal(sig, h)


def run(config, workdir, *, agent=None, progress: Optional[bool] = None) -> dict:
    """Trains (or resumes) the run in `workdir`; returns the done.json content (or {'stopped': True}).

    A workdir whose done.json exists is finished: nothing runs, its done.json is returned.
    """
    done = pathlib.Path(workdir) / "done.json"
    if done.exists():
        print(f"{workdir} is finished (done.json exists); nothing to do", file=sys.stderr)
        return json.loads(done.read_text())
    return Trainer(config, workdir, agent=agent, progress=progress).run()
