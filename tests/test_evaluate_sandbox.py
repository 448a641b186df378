"""The sandbox runs programs against test cases and turns every misbehaviour into a failed case."""

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading

import pytest

from emergence_jax.evaluate import sandbox
from emergence_jax.evaluate.sandbox import run_test_cases

ADD_TWO_NUMBERS = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest.fixture(autouse=True, scope="module")
def jail_available():
    """Every test here runs programs in the jail: skip, saying why, where the kernel refuses it."""
    try:
        sandbox.check_jail()
    except sandbox.UserError as error:
        pytest.skip(f"this kernel refuses the jail's namespaces: {error}")


def test_correct_program_passes_and_wrong_answer_fails():
    results = run_test_cases(ADD_TWO_NUMBERS, [("1 2\n", "3\n"), ("-5 5", "0"), ("2 2", "5")], time_limit_s=10)
    assert [r.passed for r in results] == [True, True, False]
    assert [r.reason for r in results] == ["passed", "passed", "wrong_output"]
    assert "5" in results[2].detail and "4" in results[2].detail


def test_infinite_loop_is_stopped_by_the_time_limit():
    (result,) = run_test_cases("while True:\n    pass\n", [("", "")], time_limit_s=1.0)
    assert not result.passed
    assert result.reason == "timeout"
    assert result.seconds < 5


def test_memory_bomb_is_stopped_by_the_memory_limit():
    program = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n"
    (result,) = run_test_cases(program, [("", "")], time_limit_s=10, memory_limit_mb=256)
    assert not result.passed
    assert result.reason == "memory_limit"


def test_runtime_error_is_reported_with_its_traceback():
    (result,) = run_test_cases("print(1 // 0)\n", [("", "0")], time_limit_s=10)
    assert result.reason == "runtime_error"
    assert "ZeroDivisionError" in result.detail


@pytest.fixture()
def listening_server():
    """A TCP server on the host's loopback that answers 'hello' to anyone who connects."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(20)

    def serve():
        try:
            while True:
                connection, _ = server.accept()
                connection.sendall(b"hello")
                connection.close()
        except OSError:
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()


def _connect_program(port: int) -> str:
    return textwrap.dedent(f"""
        import socket
        connection = socket.create_connection(("127.0.0.1", {port}), timeout=5)
        print(connection.recv(5).decode())
    """)


def test_network_attempt_fails_inside_but_works_outside(listening_server):
    program = _connect_program(listening_server)
    outside = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
    assert outside.stdout.strip() == "hello", "control: the server must be reachable outside the sandbox"
    (result,) = run_test_cases(program, [("", "hello")], time_limit_s=10)
    assert not result.passed
    assert result.reason == "sandbox_violation"
    assert "socket" in result.detail


def test_the_jail_alone_blocks_the_connection(listening_server, monkeypatch):
    """The OS layer under the audit hook: the jail's network namespace cannot reach host loopback."""
    monkeypatch.setattr(sandbox, "_AUDIT_HOOK", False)
    (result,) = run_test_cases(_connect_program(listening_server), [("", "hello")], time_limit_s=10)
    assert result.reason == "runtime_error", result
    assert "Error" in result.detail and "hello" not in result.detail


@pytest.fixture()
def outside_path():
    """A host folder outside /tmp (inside the jail, /tmp is the program's own throwaway folder)."""
    path = tempfile.mkdtemp(prefix="emergence-jax-sandbox-test-", dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_write_outside_the_working_directory_fails_and_writes_nothing(outside_path):
    tmp_path = outside_path
    outside_file = tmp_path / "escaped.txt"
    outside_dir = tmp_path / "made_by_program"
    existing = tmp_path / "keep.txt"
    existing.write_text("original")
    attempts = {
        "open": f"open({str(outside_file)!r}, 'w').write('x')",
        "os.open": f"import os; os.open({str(outside_file)!r}, os.O_WRONLY | os.O_CREAT)",
        "relative": "open('../../escaped.txt', 'w').write('x')",
        "mkdir": f"import os; os.mkdir({str(outside_dir)!r})",
        "remove": f"import os; os.remove({str(existing)!r})",
        "rename": f"import os; os.rename({str(existing)!r}, 'stolen.txt')",
        "shell": f"import os; os.system('touch {outside_file}')",
        "subprocess": f"import subprocess; subprocess.run(['touch', {str(outside_file)!r}])",
        "ctypes": "import ctypes; ctypes.CDLL(None).system(b'true')",
        "home": "import os, pathlib; (pathlib.Path.home() / '..' / '..' / 'escaped.txt').write_text('x')",
    }
    for name, attempt in attempts.items():
        program = f"{attempt}\nprint('done')\n"
        (result,) = run_test_cases(program, [("", "done")], time_limit_s=10)
        assert not result.passed, name
        assert result.reason == "sandbox_violation", (name, result)
    assert not outside_file.exists()
    assert not outside_dir.exists()
    assert existing.read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_writes_inside_the_working_directory_are_allowed_and_thrown_away():
    program = textwrap.dedent("""
        import os
        os.mkdir("scratch")
        with open("scratch/note.txt", "w") as f:
            f.write(input() + "padding")
        os.truncate("scratch/note.txt", 4)
        os.chmod("scratch/note.txt", 0o600)
        os.rename("scratch/note.txt", "scratch/kept.txt")
        open("/dev/null", "w").write("discarded")
        os.rename("scratch/kept.txt", "scratch/note.txt")
        print(open("scratch/note.txt").read(), os.path.basename(os.environ["HOME"]))
    """)
    (result,) = run_test_cases(program, [("kept", "kept tmp")], time_limit_s=10)
    assert result.passed, result


def test_a_caught_violation_still_fails_the_case(outside_path):
    tmp_path = outside_path
    program = textwrap.dedent(f"""
        try:
            open({str(tmp_path / 'x.txt')!r}, "w")
        except PermissionError:
            pass
        print(3)
    """)
    (result,) = run_test_cases(program, [("", "3")], time_limit_s=10)
    assert result.reason == "sandbox_violation"
    assert not (tmp_path / "x.txt").exists()


def test_standard_streams_by_name():
    program = "import sys\nline = open('/dev/stdin').read().strip()\nopen('/dev/stdout', 'w').write(line + ' ok')\n"
    (result,) = run_test_cases(program, [("abc\n", "abc ok")], time_limit_s=10)
    assert result.passed, result
    (result,) = run_test_cases("import sys\nsys.stdin = open(0)\nprint(input()[::-1])\n", [("abc\n", "cba")], time_limit_s=10)
    assert result.passed, result


def test_stop_at_first_failure_skips_the_remaining_cases():
    results = run_test_cases(ADD_TWO_NUMBERS, [("1 1", "3"), ("1 2", "3")], time_limit_s=10, stop_at_first_failure=True)
    assert [r.reason for r in results] == ["wrong_output"]


def test_sandbox_leaves_no_files_in_the_temp_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    run_test_cases("open('out.txt', 'w').write('x')\nprint(1)\n", [("", "1")], time_limit_s=10)
    assert list(tmp_path.iterdir()) == []
    assert os.environ["TMPDIR"] == str(tmp_path)


def test_programs_that_cannot_compile_or_fake_the_jails_messages_are_their_own_failures():
    cases = {
        "x = (\n": "SyntaxError",
        "print(1)\0\n": "null bytes",
        "import sys\nsys.stderr.write('emergence-jax jail setup failed: setup-error unavailable x\\n')\nsys.exit(125)\n": "unavailable x",
    }
    for program, detail in cases.items():
        (result,) = run_test_cases(program, [("", "1")], time_limit_s=10)
        assert result.reason == "runtime_error", (program, result)
        assert detail in result.detail, (program, result)


@pytest.mark.parametrize("limits", [{"time_limit_s": 0}, {"time_limit_s": float("nan")}, {"memory_limit_mb": -1},
                                    {"output_limit_mb": float("inf")}, {"max_processes": 0}])
def test_limits_must_be_positive_and_finite(limits):
    with pytest.raises(sandbox.UserError, match=next(iter(limits))):
        sandbox.run_program("print(1)", "", "1", **limits)
