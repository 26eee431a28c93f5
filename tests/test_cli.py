"""The command-line programs: --help, and bad flags that must fail before anything is written."""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args, tmp_path, timeout=120, env=None):
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _assert_refused(r, named):
    """The project rule for bad input: exit status 2 and one stderr line naming the bad value."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    assert named in lines[0], lines[0]


def _tree(path):
    """(relative path, size, mtime) of everything under `path`: a refused run must change nothing."""
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*"))


@pytest.mark.parametrize("flags,named", [
    (["--config={repo}/configs/atari.py:not_a_game"], "not_a_game"),
    (["--config={repo}/configs/dmc.py:walker_fly"], "walker_fly"),
    (["--config={repo}/configs/tiny.py:nope"], "nope"),
    (["--config={repo}/configs/tiny.py:fake", "--config.no_such_key=3"], "no_such_key"),
    (["--config={repo}/configs/tiny.py:fake", "--config.model.hiden=3"], "hiden"),
    (["--config={repo}/configs/atari.py:alien", "--config.env.task=not_a_game"], "not_a_game"),
    (["--config={repo}/configs/tiny.py:fake", "--config.batch_size=0"], "batch_size"),
    (["--config={repo}/configs/tiny.py:fake", "--config.seed=abc"], "seed"),
    (["--config={repo}/configs/nope.py:alien"], "configs/nope.py"),
    (["--config=configs/nope.py:alien"], "configs/nope.py"),
    (["--config", "{repo}/configs/nope.py:alien", "--config.seed=3"], "configs/nope.py"),
    (["--config={repo}/configs:alien"], "configs"),
    (["--config={repo}/configs/tiny.py:fake", "--no_such_flag"], "no_such_flag"),
    (["--config={repo}/configs/tiny.py:fake", "leftover"], "leftover"),
])
def test_bad_flags_fail_before_writing(tmp_path, flags, named):
    workdir = tmp_path / "run"
    args = ["twister_jax.train", f"--workdir={workdir}"] + [f.format(repo=REPO) for f in flags]
    r = _run(args, tmp_path)
    _assert_refused(r, named)
    assert not workdir.exists()


def test_missing_workdir_flag(tmp_path):
    r = _run(["twister_jax.train", f"--config={REPO}/configs/tiny.py:fake"], tmp_path)
    assert r.returncode != 0 and "workdir" in r.stderr


def test_help_documents_flags(tmp_path):
    # absl's --help exits with status 1 after printing the usage to stdout; check the text only.
    r = _run(["twister_jax.train", "--help"], tmp_path)
    for flag in ("--config", "--workdir", "--multihost", "--config.KEY=VALUE"):
        assert flag in r.stdout, flag
    r = _run(["twister_jax.evaluate", "--help"], tmp_path)
    for flag in ("--workdir", "--episodes", "--video"):
        assert flag in r.stdout, flag


def test_evaluate_without_run_fails_cleanly(tmp_path):
    r = _run(["twister_jax.evaluate", f"--workdir={tmp_path / 'nothing'}"], tmp_path)
    _assert_refused(r, str(tmp_path / "nothing"))
    assert "does not exist" in r.stderr and not (tmp_path / "nothing").exists()
    (tmp_path / "empty").mkdir()
    r = _run(["twister_jax.evaluate", f"--workdir={tmp_path / 'empty'}"], tmp_path)
    _assert_refused(r, str(tmp_path / "empty" / "config.json"))
    assert os.listdir(tmp_path / "empty") == []


def test_incompatible_workdir_is_refused(tmp_path):
    import json
    from config_utils import get_config
    from twister_jax import checkpoint

    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(checkpoint.config_to_dict(get_config("tiny", "fake"))))
    r = _run(["twister_jax.train", f"--workdir={workdir}", f"--config={REPO}/configs/tiny.py:fake",
              "--config.model.hidden=64"], tmp_path)
    assert r.returncode != 0 and "model.hidden" in r.stderr, r.stderr
    assert sorted(os.listdir(workdir)) == ["config.json"]


def test_dockerfile_installs_the_readme_extras():
    """No Docker engine here (docs/interfaces.md §8): the Dockerfile must run the README's install command."""
    import re

    readme = (REPO / "README.md").read_text()
    docker = (REPO / "Dockerfile").read_text()
    pattern = r'pip install -e "\.\[([a-z,]+)\]"'
    readme_extras = {m for m in re.findall(pattern, readme)}
    build = "\n".join(ln for ln in docker.splitlines() if not ln.lstrip().startswith("#"))
    docker_extras = set(re.findall(pattern, build))
    assert "all" in readme_extras and docker_extras == {"all"}
    assert "jax[cuda12]" in docker and "MUJOCO_GL=egl" in docker and "libegl1" in docker
    if "scripts/install_system_deps.sh" in readme:
        assert "scripts/install_system_deps.sh" in docker
    for line in ("docker build", "docker run"):
        assert line in docker


def test_config_file_that_is_not_python_is_named(tmp_path):
    (tmp_path / "broken.py").write_text("def get_config(arg):\n    return (\n")
    workdir = tmp_path / "run"
    r = _run(["twister_jax.train", f"--workdir={workdir}", "--config=broken.py:x"], tmp_path)
    _assert_refused(r, "broken.py")
    assert not workdir.exists()


def test_workdir_that_is_a_file_is_refused(tmp_path):
    workdir = tmp_path / "run"
    workdir.write_text("notes\n")
    r = _run(["twister_jax.train", f"--workdir={workdir}", f"--config={REPO}/configs/tiny.py:fake"], tmp_path)
    _assert_refused(r, str(workdir))
    assert "is a file" in r.stderr and workdir.read_text() == "notes\n"
    r = _run(["twister_jax.train", f"--workdir={workdir / 'sub'}", f"--config={REPO}/configs/tiny.py:fake"],
             tmp_path)
    _assert_refused(r, str(workdir))
    assert workdir.read_text() == "notes\n"


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write: a read-only tmpfs when root (root ignores mode bits)."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs as root here: {r.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_read_only_workdir_is_refused(tmp_path, read_only_dir):
    for workdir in (read_only_dir, read_only_dir / "run", read_only_dir / "a" / "b"):
        r = _run(["twister_jax.train", f"--workdir={workdir}", f"--config={REPO}/configs/tiny.py:fake"],
                 tmp_path)
        _assert_refused(r, str(workdir))
        assert "not writable" in r.stderr
        assert os.listdir(read_only_dir) == []


def test_damaged_run_config_is_named(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text('{"seed": 0, "env": {"su')
    before = _tree(workdir)
    r = _run(["twister_jax.train", f"--workdir={workdir}", f"--config={REPO}/configs/tiny.py:fake"], tmp_path)
    _assert_refused(r, str(workdir / "config.json"))
    assert _tree(workdir) == before


@pytest.mark.parametrize("flag,named", [
    ("--config.batch_size=3", "batch_size=3"),                      # does not divide over 2 devices
    ("--config.replay_on_device=on", "replay_on_device='on'"),      # the frame store needs one device
])
def test_device_dependent_values_are_refused_before_anything_is_written(tmp_path, flag, named):
    workdir = tmp_path / "run"
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    r = _run(["twister_jax.train", f"--workdir={workdir}", f"--config={REPO}/configs/tiny.py:fake", flag],
             tmp_path, env=env)
    _assert_refused(r, named)
    assert not workdir.exists()


@pytest.mark.parametrize("flags,named", [
    (["--workdir={tmp}/nothing"], "nothing"),
    (["--workdir={tmp}/afile"], "afile"),
    (["--workdir={tmp}/damaged"], "config.json"),
    (["--workdir={tmp}/notaconfig"], "config.json"),
    ([], "workdir"),
    (["--workdir={tmp}/damaged", "--bogus"], "bogus"),
    (["--workdir={tmp}/damaged", "--episodes=abc"], "abc"),
    (["--workdir={tmp}/damaged", "--episodes=0"], "episodes"),
    (["--workdir={tmp}/damaged", "--video={tmp}/out.avi"], "out.avi"),
    (["--workdir={tmp}/damaged", "--video={tmp}/afile/out.gif"], "afile"),
    (["--workdir={tmp}/damaged", "leftover"], "leftover"),
])
def test_evaluate_bad_inputs_fail_in_one_line(tmp_path, flags, named):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "config.json").write_text("{bad")
    (tmp_path / "notaconfig").mkdir()
    (tmp_path / "notaconfig" / "config.json").write_text("{}")
    before = _tree(tmp_path)
    r = _run(["twister_jax.evaluate"] + [f.format(tmp=tmp_path) for f in flags], tmp_path)
    _assert_refused(r, named)
    assert _tree(tmp_path) == before
