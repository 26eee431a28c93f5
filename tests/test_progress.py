"""twister_jax.progress: plain lines while pre-filling (no gradient steps yet) and rates from restart_clock."""
import io
import time

from twister_jax.progress import Progress


def test_plain_lines_during_prefill_and_rates_after_restart():
    out = io.StringIO()
    p = Progress(100, tty=False, interval=0.0, stream=out)
    p.update(0, env_steps=640, phase="prefill")          # n does not move: still a line
    assert "step 0/100" in out.getvalue() and "phase=prefill" in out.getvalue()
    p.update(0, env_steps=6400, phase="train")
    p.restart_clock()
    time.sleep(0.05)
    p.update(10, env_steps=6410, loss=1.5)
    last = out.getvalue().strip().splitlines()[-1]
    assert "step 10/100 (10.0%)" in last and "loss=1.5" in last and "phase=train" in last
    steps_rate = float(last.split(" steps/s")[0].split()[-1])
    env_rate = float(last.split("env_steps/s=")[1].split()[0])
    assert 0 < steps_rate < 10 / 0.05 + 1e-6 and 0 < env_rate < 10 / 0.05 + 1e-6


def test_plain_lines_are_rate_limited():
    out = io.StringIO()
    p = Progress(100, tty=False, interval=3600.0, stream=out)
    p._last_print = time.time()
    for i in range(50):
        p.update(i, env_steps=i)
    assert out.getvalue() == ""
    p.close()                                             # the closing line is always printed
    assert "step 49/100" in out.getvalue()


# ------------------------------------------------------------------------------------ MetricLog
def _steps(n, keys=("loss", "kl", "grad_norm_actor"), seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return [{k: rng.normal(scale=10.0 ** i, size=()).astype(np.float32) for i, k in enumerate(keys)}
            for _ in range(n)]


def _expected_row(steps):
    """The row's metric means as defined: each metric's float32 values in float64, in step order."""
    import numpy as np
    return {k: float(np.mean([np.float64(m[k]) for m in steps])) for k in steps[0]}


def test_metric_log_packs_device_scalars_and_rows_equal_the_definition():
    import jax.numpy as jnp
    import numpy as np
    from twister_jax.outputs import MetricLog

    steps = _steps(7)
    log = MetricLog()
    for m in steps:
        log.add({k: jnp.asarray(v) for k, v in m.items()})
    assert all(keys is not None for keys, _ in log.pending)      # packed on the device, one array per step
    state = log.get_state()
    assert state["keys"] == list(steps[0])
    for k in steps[0]:
        assert state["values"][k].dtype == np.float32
        np.testing.assert_array_equal(state["values"][k], np.stack([m[k] for m in steps]))
    row = log.row(7, 70, 280, 1, [], 5)
    assert {k: row[k] for k in steps[0]} == _expected_row(steps)  # exact, not approximate
    assert log.pending == [] and "loss" not in log.row(8, 80, 320, 1, [], 5)


def test_metric_log_resume_mixes_restored_and_packed_steps_exactly():
    import jax.numpy as jnp
    from twister_jax.outputs import MetricLog

    steps = _steps(9, seed=1)
    whole = MetricLog()
    for m in steps:
        whole.add({k: jnp.asarray(v) for k, v in m.items()})
    first = MetricLog()
    for m in steps[:4]:
        first.add({k: jnp.asarray(v) for k, v in m.items()})
    resumed = MetricLog()
    resumed.set_state(first.get_state())
    for m in steps[4:]:
        resumed.add({k: jnp.asarray(v) for k, v in m.items()})
    a, b = whole.row(9, 0, 0, 0, [], 0), resumed.row(9, 0, 0, 0, [], 0)
    assert {k: a[k] for k in steps[0]} == {k: b[k] for k in steps[0]} == _expected_row(steps)
    # values that cannot be packed (NumPy, other dtypes) are kept as given
    plain = MetricLog()
    plain.add({"loss": 1.5, "count": jnp.asarray(3, jnp.int32)})
    plain.add({"loss": 2.5, "count": jnp.asarray(5, jnp.int32)})
    row = plain.row(2, 0, 0, 0, [], 0)
    assert row["loss"] == 2.0 and row["count"] == 4.0


def test_metric_log_falls_back_to_dicts_when_packing_fails(monkeypatch, caplog):
    import jax.numpy as jnp
    from twister_jax import outputs

    def refuse(*values):  # what jit says for scalars committed to different devices
        raise ValueError("Received incompatible devices for jitted computation")
    monkeypatch.setattr(outputs, "_pack", refuse)
    steps = _steps(3, seed=2)
    log = outputs.MetricLog()
    for m in steps:
        log.add({k: jnp.asarray(v) for k, v in m.items()})
    assert [keys for keys, _ in log.pending] == [None, None, None]
    assert sum("kept unpacked" in r.getMessage() for r in caplog.records) == 1   # said once
    row = log.row(3, 0, 0, 0, [], 0)
    assert {k: row[k] for k in steps[0]} == _expected_row(steps)
