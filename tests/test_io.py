"""emergence_jax.io: atomic writes, strict JSON, bounded reads and locked appends."""

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from emergence_jax import io
from emergence_jax.errors import UserError


def test_atomic_write_keeps_mode_and_symlink_and_leaves_no_temp(tmp_path):
    target = tmp_path / "data" / "real.json"
    target.parent.mkdir()
    target.write_text("{}")
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    io.write_json(link, {"a": 1})
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["data", "link.json"] and os.listdir(target.parent) == ["real.json"]


def test_new_file_gets_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        io.atomic_write_text(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644


def test_failed_write_removes_temp_and_keeps_old_contents(tmp_path):
    path = tmp_path / "plot.png"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(path) as tmp:
            assert tmp.suffix == ".png" and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["plot.png"]


def test_temp_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "state.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    host = socket.gethostname().replace("-", "_")
    stale = tmp_path / f".state.json.tmp-{host}-{dead}-abcd1234.json"
    stale.write_text("{")
    alive = tmp_path / f".state.json.tmp-{host}-{os.getpid()}-abcd1234.json"  # a live writer's temp stays
    alive.write_text("{")
    io.write_json(path, {"ok": True})
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, alive.name])


def test_kill_9_during_atomic_writes_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / "big.json"
    code = f"from emergence_jax import io\nwhile True: io.write_json({str(path)!r}, {{'x': list(range(200000))}})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # several more writes, then a kill at an arbitrary point of one
    proc.kill()
    proc.wait()
    assert json.loads(path.read_text())["x"][-1] == 199999
    io.write_json(path, {"x": []})  # the next write sweeps the killed writer's temp
    assert os.listdir(tmp_path) == ["big.json"]


def test_strict_json_out_writes_non_finite_as_null_and_numpy_as_plain():
    text = io.to_json_text({"nan": float("nan"), "inf": np.float32("inf"), "a": np.arange(2), "s": np.int64(3), "t": (1.5,)}, indent=None)
    assert json.loads(text) == {"nan": None, "inf": None, "a": [0, 1], "s": 3, "t": [1.5]}
    with pytest.raises(TypeError):
        io.to_json_text({"x": object()})


@pytest.mark.parametrize(
    "text, phrase",
    [
        ('{"a": NaN}', "'NaN' is not a JSON number"),
        ('{"a": -Infinity}', "'-Infinity' is not a JSON number"),
        ('{"a": 1e400}', "too large for a float"),
        ('{"a": 1, "a": 2}', "key 'a' appears twice"),
        ("[" * 65 + "]" * 65, "nested deeper than 64"),
        ('{"a": 1', "line 1: not valid JSON"),
        ("{\n\n  oops}", "line 3: not valid JSON"),
    ],
)
def test_strict_json_in(text, phrase):
    with pytest.raises(UserError, match=phrase) as err:
        io.loads_json(text, source="f.json")
    assert str(err.value).startswith("f.json: ")


def test_depth_limit_ignores_brackets_inside_strings():
    assert io.loads_json(json.dumps({"s": "[" * 500}), source="f") == {"s": "[" * 500}
    assert io.loads_json("[" * 64 + "]" * 64, source="f") is not None


def test_bounded_reads(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 100)
    with pytest.raises(UserError, match="larger than the 10-byte limit"):
        io.read_bytes(big, max_bytes=10)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfmodel\n")
    assert io.read_text(bom) == "model\n"
    with pytest.raises(UserError, match="is a folder"):
        io.read_bytes(tmp_path)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("err", pytest.raises(UserError, io.read_bytes, fifo)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert "FIFO" in str(result["err"].value)


def test_locked_file_waits_and_follows_a_replaced_file(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("old\n")
    order = []
    with io.locked_file(path) as handle:
        def appender():
            io.append_lines(path, ["late"], is_complete=lambda line: True)
            order.append("appended")

        thread = threading.Thread(target=appender)
        thread.start()
        time.sleep(0.3)
        assert order == []  # blocked by our lock
        io.atomic_write_text(path, "new\n")  # replace the file while holding the old one's lock
        order.append("replaced")
        assert handle.read() == b"old\n"
    thread.join(10)
    assert order == ["replaced", "appended"]
    assert path.read_text() == "new\nlate\n"  # the waiter retook the lock on the new file


def test_append_lines_header_and_partial_line(tmp_path):
    path = tmp_path / "t.csv"
    io.append_lines(path, ["1,2"], header="a,b", is_complete=lambda line: line.count(b",") == 1)
    with pytest.raises(UserError, match="the header is not 'x,y'"):
        io.append_lines(path, ["3,4"], header="x,y", is_complete=lambda line: True)
    with open(path, "ab") as handle:
        handle.write(b"5")  # a writer killed mid-row
    with pytest.warns(UserWarning, match="incomplete last line"):
        io.append_lines(path, ["6,7"], header="a,b", is_complete=lambda line: line.count(b",") == 1)
    assert path.read_text() == "a,b\n1,2\n6,7\n"


def test_locked_file_refuses_folders_and_devices(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        with io.locked_file(tmp_path):
            pass
    with pytest.raises(UserError, match="is a device"):
        with io.locked_file("/dev/null"):
            pass


def test_user_error_is_one_bounded_line():
    err = UserError("a\nb\r\nc" + "x" * 5000)
    assert "\n" not in str(err) and "\r" not in str(err) and len(str(err)) <= 1000
