"""Where the golden tests find their fixtures (tests/golden_utils.py), and what counts as an error.

Rules: by default the fixtures are tests/golden/ inside the repository; TWISTER_GOLDEN_DIR names
another folder in the same format (relative to the repository root); every fixture in that folder
is one test of tests/test_golden.py; a missing folder, a folder without fixtures, or the variable
set to an empty string fails (collection of tests/test_golden.py errors, with the folder named).
"""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import golden_utils
from golden_utils import ENV_VAR, GoldenDirError, fixture_files, golden_dir, load_fixture

pytestmark = pytest.mark.golden

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL = ("attention_masks", "lambda_returns")  # two small fixtures, copied into temporary folders


def _copy(dest: pathlib.Path, stems=SMALL) -> pathlib.Path:
    dest.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        for ext in (".json", ".npz"):
            shutil.copy(golden_utils.DEFAULT_DIR / f"{stem}{ext}", dest)
    return dest


def test_default_folder_is_inside_the_repository(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert golden_dir() == REPO / "tests" / "golden"
    files = fixture_files()
    assert all(p.parent == REPO / "tests" / "golden" for p in files)
    # every fixture shipped with the repository is complete (json + npz) and in the test list
    shipped = {p.stem for p in (REPO / "tests" / "golden").iterdir() if p.suffix in (".json", ".npz")}
    assert {p.stem for p in files} == shipped and len(shipped) >= 24
    for p in files:
        assert p.is_file() and p.with_suffix(".npz").is_file(), p


def test_variable_names_another_folder(monkeypatch, tmp_path):
    folder = _copy(tmp_path / "other")
    monkeypatch.setenv(ENV_VAR, str(folder))
    assert golden_dir() == folder.resolve()
    assert [p.name for p in fixture_files()] == [f"{s}.json" for s in sorted(SMALL)]
    # a relative path resolves against the repository root, wherever pytest was started
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, "tests/golden")
    assert golden_dir() == REPO / "tests" / "golden"


@pytest.mark.parametrize("kind", ["missing", "no_fixtures", "empty_value"])
def test_unusable_folder_is_an_error(monkeypatch, tmp_path, kind):
    if kind == "missing":
        value, expect = str(tmp_path / "nowhere"), "does not exist"
    elif kind == "no_fixtures":
        (tmp_path / "notes.txt").write_text("not a fixture")
        value, expect = str(tmp_path), "holds no fixtures"
    else:
        value, expect = "", "set to an empty string"
    monkeypatch.setenv(ENV_VAR, value)
    with pytest.raises(GoldenDirError, match=expect) as err:
        fixture_files()
    if kind != "empty_value":
        assert value in str(err.value) and ENV_VAR in str(err.value)


def test_fixture_without_its_sidecar_is_a_failing_test(monkeypatch, tmp_path):
    folder = _copy(tmp_path, stems=SMALL[:1])
    shutil.copy(golden_utils.DEFAULT_DIR / f"{SMALL[1]}.npz", folder)  # npz without its json
    monkeypatch.setenv(ENV_VAR, str(folder))
    files = fixture_files()
    assert [p.stem for p in files] == sorted(SMALL)
    load_fixture(files[0])
    with pytest.raises(GoldenDirError, match=f"{SMALL[1]}.json"):
        load_fixture(files[1])


def _collect(env_value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{ENV_VAR: env_value})
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "tests/test_golden.py"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_pytest_collects_one_test_per_fixture_and_fails_on_an_empty_folder(tmp_path):
    """The rules end to end, through pytest's collection of tests/test_golden.py."""
    run = _collect(str(_copy(tmp_path / "two")))
    assert run.returncode == 0, run.stdout + run.stderr
    ids = sorted(line.split("::", 1)[1] for line in run.stdout.splitlines() if "::test_golden[" in line)
    assert ids == [f"test_golden[{s}]" for s in sorted(SMALL)], run.stdout

    (tmp_path / "empty").mkdir()
    run = _collect(str(tmp_path / "empty"))
    assert run.returncode != 0, run.stdout
    assert "GoldenDirError" in run.stdout and "holds no fixtures" in run.stdout, run.stdout
