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
     `step += 1`; a batched env step when `step % env_step_every == 0` (with `overlap_acting`, ours
     and off by default: that env step acts with the params from before the gradient step and runs
     in the env workers during it, docs/architecture.md §7); a log row every `log_every`;
     then, at epoch ends (§7.4 order): evaluation every `eval_every` and at the last step, a
     checkpoint every `checkpoint_every` and at the last step, figures every `figure_every`;
  4. end: `done.json`, written last, atomically. A finished run given a larger `num_train_steps` is
     extended from its newest checkpoint (`run`).

Keys (docs/interfaces.md §4): one base key `jax.random.key(seed)`, one `fold_in` per purpose (init,
train, act, eval, figures). Everything the next step depends on is in the checkpoint, so a run
killed after a checkpoint and resumed writes the same rows as one never interrupted (CPU, float32).
SIGTERM/SIGINT: the current gradient step finishes, a checkpoint is saved, the program returns
normally (exit status 0, no done.json); an interrupted evaluation is redone on resume.
"""
from __future__ import annotations

import logging
import pathlib
import signal
import sys
import threading
import time
from typing import Optional

import numpy as np

from twister_jax.acting import FIGURES, INIT, TRAIN, env_seed
from twister_jax import rundir
from twister_jax import runs as runs_lib

log = logging.getLogger(__name__)


class Trainer:
    """The runs of `config` (one, or a group of `config.num_seeds`), their parts, the train state and
    the schedule (see the module docstring; groups: `twister_jax.runs`, docs/architecture.md §9)."""

    def __init__(self, config, workdir, *, agent=None, progress: Optional[bool] = None,
                 allow_empty_replay: bool = False, require_checkpoint: bool = False):
        import jax
        from twister_jax import checkpoint, preflight, runtime
        from twister_jax.outputs import MetricLog

        self.config, self.workdir, self.progress_enabled = config, pathlib.Path(workdir), progress
        runtime.configure_jax(config)
        preflight.check_run(config, self.workdir)  # raises before anything is written
        if agent is None:
            from twister_jax import agent as agent_lib
            agent = agent_lib.make_agent(config)
        self.agent, self.is_chief = agent, jax.process_index() == 0
        self.group = runs_lib.num_runs(config) > 1
        self.local_batch = int(config.batch_size) // jax.process_count()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.shared_envs, self._in_flight = None, None
        self.runs = self._build_runs(MetricLog)
        from twister_jax import frame_store
        # the replays' frames on the device (config.replay_on_device); rebuilt from them on restore
        self.frames = frame_store.FrameStore([r.replay for r in self.runs]) if frame_store.wanted(config) else None
        self._last_images = None
        self.train_keys = self._stack_keys([jax.random.fold_in(r.base_key, TRAIN) for r in self.runs])
        self.ckpt = checkpoint.Checkpointer(self.workdir, config)
        self.train_state = agent.init_state(self._stack_keys([jax.random.fold_in(r.base_key, INIT) for r in self.runs]))
        self.act_state = agent.init_act_state(int(config.env.num_envs)) if self.group else None
        self.step, self.stop_requested, self.progress = 0, False, None
        try:
            self._restore(allow_empty_replay, require_checkpoint)
        except Exception:
            self.close()
            raise
        from twister_jax.outputs import Outputs
        if self.is_chief:
            if self.group:
                rundir.write_config(self.workdir, config, self.step)
            for r in self.runs:
                r.workdir.mkdir(parents=True, exist_ok=True)
                rundir.write_config(r.workdir, r.config, self.step)
        for r in self.runs:
            r.out = Outputs(r.workdir, self.step, enabled=self.is_chief)
            r.metrics.mark(self.step, r.collector.env_steps)

    def _build_runs(self, metric_log) -> list:
        import jax
        from twister_jax.collector import Collector, EnvSlice, env_seeds
        from twister_jax.envs.vector import VectorEnv
        from twister_jax.evaluator import Evaluator
        from twister_jax.replay import ReplayBuffer

        config, pid = self.config, jax.process_index()
        n = int(config.env.num_envs)
        cfgs = [runs_lib.run_config(config, i) for i in range(runs_lib.num_runs(config))]
        if self.group:  # every run's envs in one VectorEnv: its workers step all of them in parallel
            self.shared_envs = VectorEnv(config.env, [s for c in cfgs for s in env_seeds(c, pid)])
        acting_agent = self.agent.solo if self.group else self.agent
        out = []
        for i, c in enumerate(cfgs):
            base_key = jax.random.key(int(c.seed))
            replay = ReplayBuffer(int(c.replay_capacity), int(c.seq_len), n, tuple(c.env.image_size) + (3,),
                                  int(c.env.num_actions), seed=env_seed(c.seed, 100, pid))
            envs = EnvSlice(self.shared_envs, i * n, n) if self.group else None
            collector = Collector(c, acting_agent, replay, base_key, process_index=pid, envs=envs)
            out.append(runs_lib.Run(index=i, seed=int(c.seed), config=c, workdir=runs_lib.run_dir(self.workdir, config, i),
                                    base_key=base_key, replay=replay, collector=collector,
                                    evaluator=Evaluator(c, acting_agent, base_key), metrics=metric_log()))
        return out

    def _stack_keys(self, keys):
        import jax.numpy as jnp
        return jnp.stack(keys) if self.group else keys[0]

    # ----------------------------------------------------------------------------- state
    def _replays(self):
        """The replay (solo) or {run name: replay} (group, saved under replay/seed_<s>/)."""
        if not self.group:
            return self.runs[0].replay
        return {runs_lib.run_name(r.seed): r.replay for r in self.runs}

    def _acting_state(self):
        return self.act_state if self.group else self.runs[0].collector.act_state

    def _start_envs(self) -> None:
        for r in self.runs:
            r.collector.start()
        if self.group:
            self.act_state = self.agent.init_act_state(int(self.config.env.num_envs))

    def _restore(self, allow_empty_replay: bool, require_checkpoint: bool = False) -> None:
        from twister_jax import checkpoint
        r = self.ckpt.restore(checkpoint.abstract_like(self.train_state),
                              checkpoint.abstract_like(self._acting_state()), self._replays(),
                              allow_empty_replay=allow_empty_replay)
        if r is None and require_checkpoint:
            raise checkpoint.NoCheckpointError(f"no readable checkpoint in {self.ckpt.directory} to continue "
                                               f"the finished run in {self.workdir} from")
        if r is None:
            import shutil
            if self.ckpt.replay_dir.exists():  # chunks of a run killed before its first checkpoint
                shutil.rmtree(self.ckpt.replay_dir)
            self._start_envs()
            return
        self.step, self.train_state = r.step, r.train_state
        for run in self.runs:
            host = r.host[runs_lib.run_name(run.seed)] if self.group else r.host
            for name, part in run.parts.items():
                part.set_state(host[name])
        if self.group:
            self.act_state = r.act_state
        else:
            self.runs[0].collector.act_state = r.act_state
        if not r.replay_restored:  # allowed: new episodes, the replay refills before training goes on
            self._start_envs()
        c = self.runs[0].collector
        print(f"resumed from checkpoint step {self.step} ({c.env_steps} env steps"
              + (f" per run, {len(self.runs)} runs" if self.group else "") + ")"
              + ("" if r.replay_restored else " with an empty replay"), file=sys.stderr, flush=True)

    def save(self) -> None:
        def host_of(run):
            return {name: part.get_state() for name, part in run.parts.items()}
        host = ({runs_lib.run_name(r.seed): host_of(r) for r in self.runs} if self.group
                else host_of(self.runs[0]))
        c = self.runs[0].collector
        meta = {"env_steps": c.env_steps, "frames": c.frames}
        if self.group:
            meta["seeds"] = [r.seed for r in self.runs]
        if self.ckpt.save(self.step, self.train_state, self._acting_state(), host, self._replays(), meta=meta):
            log.info("checkpoint saved at step %d", self.step)

    # --------------------------------------------------------------------------- actions
    def _sample(self) -> list:
        """One batch per run; with the frame store, without images (the store takes the new frames
        and gathers the batch's images on the device into `self._last_images`) and the same windows."""
        if self.frames is None:
            return [r.replay.sample(self.local_batch) for r in self.runs]
        batches = [r.replay.sample(self.local_batch, images=False) for r in self.runs]
        self._last_images = self.frames.gather(np.stack([b.pop("frame_slot") for b in batches]))
        return batches

    def train_step(self) -> None:
        import jax
        batches = self._sample()
        if self.group:
            batch = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
            if self.frames is not None:
                batch["image"] = self._last_images
        elif self.frames is not None:
            batch = dict(batches[0], image=self._last_images)
        else:
            batch = batches[0]
            if jax.process_count() > 1:
                from twister_jax import sharding
                batches[0] = batch = sharding.global_batch(batch, self.agent.mesh or sharding.make_mesh())
        self.train_state, metrics = self.agent.train_step(self.train_state, batch, self.train_keys)
        per_run = self.agent.split_runs(metrics) if self.group else [metrics]
        for r, b, m in zip(self.runs, batches, per_run):
            r.last_batch = b
            r.metrics.add(m)
        self.step += 1

    def env_step(self) -> None:
        """One batched env step of every run: one policy call (vmapped over runs in a group), then
        one step of all envs (the group's shared `VectorEnv`)."""
        self.env_step_begin()
        self.env_step_end()

    def env_step_begin(self) -> None:
        """The policy call with the current params and the start of the envs' step; the envs (in
        worker processes) step while the caller goes on until `env_step_end()`."""
        prefill = [r.replay.num_windows < self.config.prefill_windows for r in self.runs]
        if not self.group:
            self.runs[0].collector.begin_step(self.train_state.params, prefill=prefill[0])
            return
        import jax.numpy as jnp
        from twister_jax.acting import env_actions
        obs = [r.collector.observe() for r in self.runs]
        self.act_state, action = self.agent.policy_step(
            self.train_state.params, self.act_state, np.stack([o[0] for o in obs]), np.stack([o[1] for o in obs]),
            np.stack([o[2] for o in obs]), greedy=False)
        action = np.asarray(action, np.float32)
        executed = [r.collector.choose(action[i], prefill=p) for i, (r, p) in enumerate(zip(self.runs, prefill))]
        if any(prefill) and not self.config.quirks.prefill_policy_action:
            self.act_state = self.act_state.replace(action=jnp.asarray(np.stack(executed)))
        converted = [env_actions(r.config, a) for r, a in zip(self.runs, executed)]
        self.shared_envs.step_async([x for env_act, _ in converted for x in env_act])
        self._in_flight = [stored for _, stored in converted]

    def env_step_end(self) -> None:
        """Waits for the envs' step that `env_step_begin` started and records it in every run."""
        if not self.group:
            self.runs[0].collector.end_step()
            return
        out = self.shared_envs.step_wait()
        stored, self._in_flight = self._in_flight, None
        n = int(self.config.env.num_envs)
        for i, r in enumerate(self.runs):
            r.collector.record(out[i * n:(i + 1) * n], stored[i])

    def log_row(self) -> dict:
        rows = []
        for r in self.runs:
            c = r.collector
            row = r.metrics.row(self.step, c.env_steps, c.frames, c.episodes, c.pop_finished(), r.replay.num_windows)
            r.metrics.mark(self.step, c.env_steps)
            r.out.metrics(row)
            rows.append(row)
        return rows[0]

    def _run_params(self):
        """The params of each run (a group's split along the run axis)."""
        params = self.train_state.params
        return self.agent.split_runs(params) if self.group else [params]

    def evaluate(self) -> None:
        due = [r for r in self.runs if r.evaluator.due(self.step, self.step >= self.config.num_train_steps)]
        params = self._run_params()
        for r in due:
            c = r.collector
            row = r.evaluator.run(params[r.index], self.step, c.env_steps, c.frames,
                                  should_stop=lambda: self.stop_requested)
            if row is not None:
                r.out.scores(row)
                who = f" seed {r.seed}" if self.group else ""
                self.progress.write(f"[eval{who}] step {self.step}: return {row['return_mean']:.2f} "
                                    f"+- {row['return_std']:.2f} over {row['episodes']} episodes")

    def figures(self) -> None:
        import jax
        if not self.is_chief or any(r.last_batch is None for r in self.runs):
            return
        params = self._run_params()
        for r in self.runs:
            try:
                key = jax.random.fold_in(jax.random.fold_in(r.base_key, FIGURES), self.step)
                batch = r.last_batch
                if self.frames is not None:  # the images of the last batch stayed on the device
                    batch = dict(batch, image=self._last_images[r.index] if self.group else self._last_images)
                r.out.figures(self.step, jax.device_get(self.agent.figures(params[r.index], batch, key)))
            except Exception as exc:  # noqa: BLE001 - diagnostics must not end a run
                log.warning("figures failed at step %d: %s", self.step, exc)

    def _eval_due(self) -> bool:
        last = self.step >= self.config.num_train_steps
        return any(r.evaluator.due(self.step, last) for r in self.runs)

    def _epoch_end(self) -> None:
        c = self.config
        last = self.step >= c.num_train_steps
        if self._eval_due():
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
    def _prefilling(self) -> bool:
        return any(r.replay.num_windows < self.config.prefill_windows for r in self.runs)

    def run(self) -> dict:
        from twister_jax.progress import Progress
        c = self.config
        c0 = self.runs[0].collector
        self.progress = Progress(int(c.num_train_steps), self.step, tty=self.progress_enabled)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if self._prefilling():
                self.progress.write(f"[prefill] collecting {c.prefill_windows} windows of {c.seq_len} steps "
                                    f"before the first gradient step")
            while self._prefilling() and not self.stop_requested:
                self.env_step()
                self.progress.update(self.step, env_steps=c0.env_steps, phase="prefill")
            self.progress.update(self.step, env_steps=c0.env_steps, phase="train")
            self.progress.restart_clock()
            if self.step > 0 and self._eval_due():
                self._epoch_end()  # an evaluation interrupted by a signal is redone
            overlap = bool(c.get("overlap_acting", False))
            while self.step < c.num_train_steps and not self.stop_requested:
                if overlap and (self.step + 1) % c.env_step_every == 0:
                    # acts with the params before this gradient step; the envs step meanwhile
                    self.env_step_begin()
                    self.train_step()
                    self.env_step_end()
                else:
                    self.train_step()
                    if self.step % c.env_step_every == 0:
                        self.env_step()
                loss = self.log_row().get("loss") if self.step % c.log_every == 0 else None
                self.progress.update(self.step, env_steps=c0.env_steps, loss=loss,
                                     score=self.runs[0].evaluator.last_score)
                self._epoch_end()
            if self.stop_requested:
                self.save()
                self.progress.write(f"stopped at step {self.step}; checkpoint saved. Re-run the same "
                                    f"command to resume.")
                return {"stopped": True, "step": self.step}
            results = [{"step": self.step, "env_steps": r.collector.env_steps, "frames": r.collector.frames,
                        "return_mean": r.evaluator.last_score, "wall_time": time.time() - r.metrics.t_start}
                       for r in self.runs]
            self.ckpt.wait()
            if self.is_chief:
                for r, result in zip(self.runs, results):
                    rundir.write_done(r.workdir, result)
            if not self.group:
                return results[0]
            result = {"step": self.step, "num_seeds": len(self.runs), "seeds": [r.seed for r in self.runs],
                      "runs": {runs_lib.run_name(r.seed): res for r, res in zip(self.runs, results)},
                      "wall_time": results[0]["wall_time"]}
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
        self.ckpt.close()
        for r in self.runs:
            for part in (r.out, r.collector, r.evaluator):
                if part is not None:
                    part.close()
        if self.shared_envs is not None:
            self.shared_envs.close()


def run(config, workdir, *, agent=None, progress: Optional[bool] = None, allow_empty_replay: bool = False) -> dict:
    """Trains (or resumes) the run in `workdir`; returns the done.json content (or {'stopped': True}).

    A workdir whose done.json reaches `config.num_train_steps` is finished: nothing runs, its
    done.json is returned. One that finished at an earlier step is extended: it resumes from its
    newest checkpoint (which must exist: `checkpoint.NoCheckpointError` otherwise, nothing written),
    its done.json files (a group's and its runs') are removed, and it trains on to the new budget,
    the change recorded in config.json's `resumes` like any resume.
    `allow_empty_replay`: resume a checkpoint whose replay files are missing or damaged with an
    empty replay (the train state is kept; new episodes pre-fill it again) instead of stopping.
    """
    done = rundir.read_done(workdir)
    if done is not None and done["step"] >= int(config.num_train_steps):
        print(f"{workdir} is finished at step {done['step']} (done.json); nothing to do", file=sys.stderr)
        return done
    trainer = Trainer(config, workdir, agent=agent, progress=progress, allow_empty_replay=allow_empty_replay,
                      require_checkpoint=done is not None)
    if done is not None:
        print(f"extending the finished run in {workdir} from step {trainer.step} to "
              f"num_train_steps={config.num_train_steps}", file=sys.stderr, flush=True)
        if trainer.is_chief:
            rundir.remove_done([trainer.workdir] + [r.workdir for r in trainer.runs if r.workdir != trainer.workdir])
    return trainer.run()
