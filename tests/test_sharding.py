"""Mesh helpers: batch divisibility error, global batch layout (8 emulated devices in a subprocess)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from twister_jax import sharding


def test_batch_that_does_not_divide_is_named():
    import jax
    mesh = sharding.make_mesh(jax.devices() * 1)
    sharding.check_batch_size(16, mesh)  # one device: anything divides

    class FakeMesh:
        devices = np.zeros(8)
    with pytest.raises(ValueError, match=r"batch_size=12 does not divide over the 8 devices.*multiple of 8"):
        sharding.check_batch_size(12, FakeMesh())


def test_global_batch_on_eight_devices():
    code = textwrap.dedent("""
        import numpy as np, jax
        from twister_jax import sharding
        mesh = sharding.make_mesh()
        assert mesh.devices.size == 8, mesh
        batch = {"image": np.arange(16 * 3, dtype=np.float32).reshape(16, 3)}
        out = sharding.global_batch(batch, mesh)
        assert out["image"].shape == (16, 3)
        assert len(out["image"].sharding.device_set) == 8
        shards = sorted(s.index[0].start for s in out["image"].addressable_shards)
        assert shards == list(range(0, 16, 2)), shards
        np.testing.assert_array_equal(np.asarray(out["image"]), batch["image"])
        print("OK")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-2000:]
