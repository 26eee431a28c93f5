"""Metric writers: JSONL rows and resume truncation, TensorBoard events, console lines, fan-out."""
import io
import json
import pathlib
import struct
import subprocess
import sys

import numpy as np

from twister_jax import writers

ROOT = pathlib.Path(__file__).parents[1]


def _read_events(logdir):
    """Every Event in the tfevents files under `logdir` (TFRecord framing, tensorboardX protos)."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            body = data[pos + 12:pos + 12 + length]
            pos += 12 + length + 4
            ev = Event()
            ev.ParseFromString(body)
            events.append(ev)
    return events


def test_jsonl_rows_and_resume_truncation(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = writers.JsonlWriter(path)
    for step in (100, 200, 300):
        w.write_scalars(step, {"loss": np.float32(step / 100), "env_steps": np.int64(step * 2),
                               "returns": np.array([1.0, 2.0]), "ok": np.bool_(True)})
    w.write_images(300, {"x": np.zeros((4, 4, 3), np.uint8)})  # ignored by JSONL
    w.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"step": s, "loss": s / 100, "env_steps": 2 * s, "returns": [1.0, 2.0], "ok": True}
                    for s in (100, 200, 300)]
    with open(path, "a") as f:
        f.write('{"step": 400, "loss"')  # a line cut by a kill
    w = writers.JsonlWriter(path, resume_step=200)
    assert [r["step"] for r in writers.read_jsonl(path)] == [100, 200]
    w.write_scalars(300, {"loss": 9.0})
    w.close()
    assert [(r["step"], r["loss"]) for r in writers.read_jsonl(path)] == [(100, 1.0), (200, 2.0), (300, 9.0)]
    writers.JsonlWriter(path).close()  # no resume step: a new run starts an empty file
    assert path.read_text() == ""


def test_jsonl_resume_keeps_damaged_lines_aside(tmp_path, caplog):
    """A damaged line (disk error, a torn last line left by a kill) is reported and kept, not lost."""
    path = tmp_path / "metrics.jsonl"
    good = [json.dumps({"step": s, "loss": s / 100}) for s in (100, 200, 300)]
    lines = [good[0], '{"step": 150, "lo\x00\x00ss": 1', good[1], "[1, 2]", good[2]]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'\xff\xfe{"step": 400, "loss"')
    with caplog.at_level("WARNING", logger="twister_jax.writers"):
        w = writers.JsonlWriter(path, resume_step=300)
    w.close()
    assert [r["step"] for r in writers.read_jsonl(path)] == [100, 200, 300]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings  # one summary line naming the file and the line numbers
    assert str(path) in warnings[0] and "2, 4, 6" in warnings[0] and "metrics.jsonl.damaged" in warnings[0]
    assert "\n" not in warnings[0]
    aside = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl.damaged").read_text().splitlines()]
    assert [(a["line"], a["torn_last_line"]) for a in aside] == [(2, False), (4, False), (6, True)]
    assert aside[0]["text"] == lines[1] and aside[1]["text"] == "[1, 2]"
    assert aside[2]["text"] == '\\xff\\xfe{"step": 400, "loss"'
    # a second resume appends to the kept-aside file; a clean file reports nothing
    with open(path, "a") as f:
        f.write('{"step": 3')
    caplog.clear()
    with caplog.at_level("WARNING", logger="twister_jax.writers"):
        writers.JsonlWriter(path, resume_step=300).close()
        writers.JsonlWriter(path, resume_step=300).close()
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1
    aside = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl.damaged").read_text().splitlines()]
    assert [a["line"] for a in aside] == [2, 4, 6, 4] and aside[-1]["text"] == '{"step": 3'


def test_tensorboard_scalars_images_videos(tmp_path):
    logdir = tmp_path / "tb"
    w = writers.TensorBoardWriter(logdir, fps=5)
    w.write_scalars(10, {"train/loss": np.float32(0.5), "note": "skipped", "n": 3})
    w.write_images(10, {"recon": np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8),
                        "single": np.zeros((8, 8, 3), np.uint8)})
    video = np.zeros((4, 8, 8, 3), np.uint8)
    video[:, :, :, 0] = np.arange(4)[:, None, None] * 60
    w.write_videos(20, {"imagine": video, "grid": np.stack([video, video])})
    w.close()
    events = _read_events(logdir)
    values = {v.tag: (ev.step, v) for ev in events if ev.HasField("summary") for v in ev.summary.value}
    assert values["train/loss"][0] == 10 and abs(values["train/loss"][1].simple_value - 0.5) < 1e-7
    assert values["n"][1].simple_value == 3.0 and "note" not in values
    recon = values["recon"][1].image
    assert recon.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and (recon.height, recon.width) == (16, 16)
    gif = values["imagine"][1].image
    assert values["imagine"][0] == 20 and gif.encoded_image_string[:6] == b"GIF89a"
    from PIL import Image
    im = Image.open(io.BytesIO(gif.encoded_image_string))
    assert im.n_frames == 4 and im.size == (8, 8)
    assert values["grid"][1].image.width == 16


def test_tensorboard_resume_purges(tmp_path):
    w = writers.TensorBoardWriter(tmp_path, resume_step=200)
    w.write_scalars(201, {"a": 1.0})
    w.close()
    starts = [ev for ev in _read_events(tmp_path) if ev.HasField("session_log")]
    assert starts and starts[0].step == 201  # TensorBoard drops older events at steps >= 201


def test_console_and_multi(tmp_path):
    out = io.StringIO()
    con = writers.ConsoleWriter(keys=["loss", "return", "missing"], stream=out)
    jl = writers.JsonlWriter(tmp_path / "m.jsonl")
    multi = writers.MultiWriter([con, jl])
    multi.write_scalars(5, {"loss": 0.123456, "return": np.float64(12.5), "other": 1})
    multi.write_images(5, {"x": np.zeros((2, 2, 3), np.uint8)})
    multi.write_videos(5, {"v": np.zeros((2, 2, 2, 3), np.uint8)})
    multi.close()
    assert out.getvalue() == "step 5 | loss 0.1235 | return 12.5\n"
    assert writers.read_jsonl(tmp_path / "m.jsonl") == [{"step": 5, "loss": 0.123456, "return": 12.5, "other": 1}]


def test_no_jax_tensorflow_or_torch_import(tmp_path):
    code = (
        "import sys, numpy as np, twister_jax.replay, twister_jax.writers as w\n"
        f"t = w.TensorBoardWriter({str(tmp_path)!r})\n"
        "t.write_scalars(1, {'a': 1.0}); t.write_images(1, {'i': np.zeros((4, 4, 3), np.uint8)})\n"
        "t.write_videos(1, {'v': np.zeros((2, 4, 4, 3), np.uint8)}); t.close()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'tensorflow', 'torch')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
