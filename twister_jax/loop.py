"""The training program: `run(config, workdir)`, a schedule over parts that own their state.

Parts (each saves itself, via `get_state()`/`set_state()` or its own files): `Collector` (training
envs, acting state, episode statistics, host RNG), `ReplayBuffer`, `Evaluator`, `MetricLog`, and
the `TrainState` (a device pytree); `Outputs` writes metrics, scores and TensorBoard.

Schedule (docs/original.md §2.4, §2.5, §7.1-§7.4), `step` = completed gradient steps:
  1. start-up: nothing is written before `preflight.check_run` passed; then the parts are built and
     the newest readable checkpoint restored, or every env reset (its reset record appended);
  2. pre-fill: batched env steps with random actions until the replay holds `prefill_windows`
     windows (the policy still runs, to fill the acting state's KV cache);
  3. loop: sample a batch, one `train_step` (key `fold_in(base, TRAIN)`; the agent folds in its step),
     `step += 1`; a batched env step when `step % env_step_every == 0`; a log row every `log_every`;
     then, at epoch ends (§7.4 order): evaluation every `eval_every` and at the last step, a
     checkpoint every `checkpoint_every` and at the last step, figures every `figure_every`;
  4. end: `done.json`, written last, atomically.

Keys (docs/interfaces.md §4): one base key `jax.random.key(seed)`, one `fold_in` per purpose (init,
train, act, eval, figures). Everything the next step depends on is in the checkpoint, so a run
killed after a checkpoint and resumed writes the same rows as one never interrupted (CPU, float32).
SIGTERM/SIGINT: the current gradient step finishes, a checkpoint is saved, the program returns
normally (exit status 0, no done.json); an interrupted evaluation is redone on resume.
"""
from __future__ import annotations

import json
import logging
import pathlib
import signal
import sys
import threading
import time
from typing import Optional

from twister_jax.acting import FIGURES, INIT, TRAIN, env_seed
from twister_jax import rundir

log = logging.getLogger(__name__)


class Trainer:
    """One run: its parts, the train state and the schedule (see the module docstring)."""

    def __init__(self, config, workdir, *, agent=None, progress: Optional[bool] = None,
                 allow_empty_replay: bool = False):
        import jax
        from twister_jax import checkpoint, preflight, runtime
        from twister_jax.collector import Collector
        from twister_jax.evaluator import Evaluator
        from twister_jax.outputs import MetricLog, Outputs
        from twister_jax.replay import ReplayBuffer

        self.config, self.workdir, self.progress_enabled = config, pathlib.Path(workdir), progress
        runtime.configure_jax(config)
        preflight.check_run(config, self.workdir)  # raises before anything is written
        if agent is None:
            from twister_jax import agent as agent_lib
            agent = agent_lib.make_agent(config)
        self.agent, self.is_chief = agent, jax.process_index() == 0
        self.base_key = jax.random.key(int(config.seed))
        self.local_batch = int(config.batch_size) // jax.process_count()
        self.workdir.mkdir(parents=True, exist_ok=True)
        pid = jax.process_index()
        self.replay = ReplayBuffer(int(config.replay_capacity), int(config.seq_len), int(config.env.num_envs),
                                   tuple(config.env.image_size) + (3,), int(config.env.num_actions),
                                   seed=env_seed(config.seed, 100, pid))
        self.collector = Collector(config, agent, self.replay, self.base_key, process_index=pid)
        self.evaluator = Evaluator(config, agent, self.base_key)
        self.metrics = MetricLog()
        self.parts = {"collector": self.collector, "evaluator": self.evaluator, "metrics": self.metrics}
        self.ckpt = checkpoint.Checkpointer(self.workdir, config)
        self.train_state = agent.init_state(jax.random.fold_in(self.base_key, INIT))
        self.step, self.last_batch, self.stop_requested, self.progress = 0, None, False, None
        self._restore(allow_empty_replay)
        if self.is_chief:
            rundir.write_config(self.workdir, config, self.step)
        self.out = Outputs(self.workdir, self.step, enabled=self.is_chief)
        self.metrics.mark(self.step, self.collector.env_steps)

    # ----------------------------------------------------------------------------- state
    def _restore(self, allow_empty_replay: bool) -> None:
        from twister_jax import checkpoint
        r = self.ckpt.restore(checkpoint.abstract_like(self.train_state),
                              checkpoint.abstract_like(self.collector.act_state), self.replay,
                              allow_empty_replay=allow_empty_replay)
        if r is None:
            import shutil
            if self.ckpt.replay_dir.exists():  # chunks of a run killed before its first checkpoint
                shutil.rmtree(self.ckpt.replay_dir)
            self.collector.start()
            return
        self.step, self.train_state = r.step, r.train_state
        for name, part in self.parts.items():
            part.set_state(r.host[name])
        self.collector.act_state = r.act_state
        if not r.replay_restored:  # allowed: new episodes, the replay refills before training goes on
            self.collector.start()
        print(f"resumed from checkpoint step {self.step} ({self.collector.env_steps} env steps)"
              + ("" if r.replay_restored else " with an empty replay"), file=sys.stderr, flush=True)

    def save(self) -> None:
        host = {name: part.get_state() for name, part in self.parts.items()}
        meta = {"env_steps": self.collector.env_steps, "frames": self.collector.frames}
        if self.ckpt.save(self.step, self.train_state, self.collector.act_state, host, self.replay, meta=meta):
            log.info("checkpoint saved at step %d", self.step)

    # --------------------------------------------------------------------------- actions
    def train_step(self) -> None:
        import jax
        batch = self.replay.sample(self.local_batch)
        if jax.process_count() > 1:
            from twister_jax import sharding
            batch = sharding.global_batch(batch, self.agent.mesh or sharding.make_mesh())
        self.train_state, metrics = self.agent.train_step(self.train_state, batch,
                                                          jax.random.fold_in(self.base_key, TRAIN))
        self.last_batch = batch
        self.metrics.add(metrics)
        self.step += 1

    def env_step(self) -> None:
        prefill = self.replay.num_windows < self.config.prefill_windows
        self.collector.step(self.train_state.params, prefill=prefill)

    def log_row(self) -> dict:
        c = self.collector
        row = self.metrics.row(self.step, c.env_steps, c.frames, c.episodes, c.pop_finished(),
                               self.replay.num_windows)
        self.metrics.mark(self.step, c.env_steps)
        self.out.metrics(row)
        return row

    def evaluate(self) -> None:
        c = self.collector
        row = self.evaluator.run(self.train_state.params, self.step, c.env_steps, c.frames,
                                 should_stop=lambda: self.stop_requested)
        if row is not None:
            self.out.scores(row)
            self.progress.write(f"[eval] step {self.step}: return {row['return_mean']:.2f} "
                                f"+- {row['return_std']:.2f} over {row['episodes']} episodes")

    def figures(self) -> None:
        import jax
        if self.last_batch is None or not self.is_chief:
            return
        try:
            key = jax.random.fold_in(jax.random.fold_in(self.base_key, FIGURES), self.step)
            self.out.figures(self.step, jax.device_get(self.agent.figures(self.train_state.params,
                                                                          self.last_batch, key)))
        except Exception as exc:  # noqa: BLE001 - diagnostics must not end a run
            log.warning("figures failed at step %d: %s", self.step, exc)

    def _epoch_end(self) -> None:
        c = self.config
        last = self.step >= c.num_train_steps
        if self.evaluator.due(self.step, last):
            self.evaluate()
        if self.stop_requested:
            return
        if self.step % c.checkpoint_every == 0 or last:
            self.save()
        if self.step % c.figure_every == 0:
            self.figures()

    def _on_signal(self, signum, frame):  # noqa: ARG002
        if self.stop_requested:  # a second signal: give up at once
            raise KeyboardInterrupt
        self.stop_requested = True
        print(f"received signal {signum}: saving a checkpoint and stopping after the current step",
              file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------- schedule
    def run(self) -> dict:
        from twister_jax.progress import Progress
        c = self.config
        self.progress = Progress(int(c.num_train_steps), self.step, tty=self.progress_enabled)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if self.replay.num_windows < c.prefill_windows:
                self.progress.write(f"[prefill] collecting {c.prefill_windows} windows of {c.seq_len} steps "
                                    f"before the first gradient step")
            while self.replay.num_windows < c.prefill_windows and not self.stop_requested:
                self.env_step()
                self.progress.update(self.step, env_steps=self.collector.env_steps, phase="prefill")
            self.progress.update(self.step, env_steps=self.collector.env_steps, phase="train")
            self.progress.restart_clock()
            if self.step > 0 and self.evaluator.due(self.step, self.step >= c.num_train_steps):
                self._epoch_end()  # an evaluation interrupted by a signal is redone
            while self.step < c.num_train_steps and not self.stop_requested:
                self.train_step()
                if self.step % c.env_step_every == 0:
                    self.env_step()
                loss = self.log_row().get("loss") if self.step % c.log_every == 0 else None
                self.progress.update(self.step, env_steps=self.collector.env_steps, loss=loss,
                                     score=self.evaluator.last_score)
                self._epoch_end()
            if self.stop_requested:
                self.save()
                self.progress.write(f"stopped at step {self.step}; checkpoint saved. Re-run the same "
                                    f"command to resume.")
                return {"stopped": True, "step": self.step}
            result = {"step": self.step, "env_steps": self.collector.env_steps, "frames": self.collector.frames,
                      "return_mean": self.evaluator.last_score, "wall_time": time.time() - self.metrics.t_start}
            self.ckpt.wait()
            if self.is_chief:
                rundir.write_done(self.workdir, result)
            return result
        finally:
            self.close()
            for sig, h in handlers.items():
                signal.signal(sig, h)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        for part in (self.ckpt, self.out, self.collector, self.evaluator):
            part.close()


def run(config, workdir, *, agent=None, progress: Optional[bool] = None, allow_empty_replay: bool = False) -> dict:
    """Trains (or resumes) the run in `workdir`; returns the done.json content (or {'stopped': True}).

    A workdir whose done.json exists is finished: nothing runs, its done.json is returned.
    `allow_empty_replay`: resume a checkpoint whose replay files are missing or damaged with an
    empty replay (the train state is kept; new episodes pre-fill it again) instead of stopping.
    """
    done = pathlib.Path(workdir) / "done.json"
    if done.exists():
        print(f"{workdir} is finished (done.json exists); nothing to do", file=sys.stderr)
        return json.loads(done.read_text())
    return Trainer(config, workdir, agent=agent, progress=progress, allow_empty_replay=allow_empty_replay).run()
