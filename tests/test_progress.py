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
