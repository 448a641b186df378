"""Run a generated Python program against (stdin, expected stdout) test cases, in isolation.

Each test case runs in a fresh process with:

- a throwaway working directory (also `HOME` and `TMPDIR`), deleted afterwards;
- a wall-clock time limit (the process group is killed) and a CPU-time limit as a backstop;
- a memory limit on the address space (`RLIMIT_AS`), so a memory bomb ends in `MemoryError`;
- a cap on the size of files it writes (`RLIMIT_FSIZE`), which also caps captured output;
- no network: a fresh network namespace (`unshare -n` as root, `unshare -rn` otherwise) when the
  kernel allows it, and in every case a Python audit hook that refuses sockets;
- a Python audit hook that refuses writing, deleting, renaming or re-permissioning anything
  outside the working directory, starting other processes (`subprocess`, `os.system`, `fork`,
  `exec`) and loading native code through `ctypes`.

This stops the accidents that sampled programs cause (infinite loops, huge allocations, stray
files, network calls); the audit hook is a Python-level guard, not a jail against code written to
escape it. A refused operation raises `PermissionError` inside the program and fails the case with
reason `"sandbox_violation"`, even if the program catches the exception.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

# The marker the audit hook prints on the real stderr whenever it refuses an operation.
VIOLATION_MARKER = "emergence-jax sandbox refused:"

# Reasons a case can have; every failure carries exactly one.
PASSED = "passed"
WRONG_OUTPUT = "wrong_output"
TIMEOUT = "timeout"
MEMORY_LIMIT = "memory_limit"
RUNTIME_ERROR = "runtime_error"
SANDBOX_VIOLATION = "sandbox_violation"
OUTPUT_LIMIT = "output_limit"

_HARNESS = r'''
import builtins, os, sys

def _install_guard(root, marker):
    """Audit hook: refuse writes outside `root`, new processes, sockets and native code."""
    root = os.path.realpath(root)
    real_stderr = os.dup(2)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    path_events = frozenset({
        "os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.symlink", "os.link", "os.chmod",
        "os.chown", "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod",
        "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move",
        "shutil.chown", "os.setxattr", "os.removexattr",
    })
    refused_events = frozenset({
        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "os.forkpty", "pty.spawn", "os.startfile", "os.kill", "os.killpg",
        "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
        "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.chroot",
    })
    realpath, join, getcwd, write, dirname = os.path.realpath, os.path.join, os.getcwd, os.write, os.path.dirname
    inside_prefix = root + os.sep

    def inside(path):
        if isinstance(path, int):
            return False
        try:
            path = os.fsdecode(path)
            resolved = realpath(join(getcwd(), path))
        except Exception:
            return False
        return resolved == root or resolved.startswith(inside_prefix)

    def refuse(event, args):
        message = f"{marker} {event} {args!r}"[:500] + "\n"
        write(real_stderr, message.encode("utf-8", "replace"))
        raise PermissionError(f"sandbox: {event} is not allowed")

    def guard(event, args):
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return
            writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and (flags or 0) & write_flags)
            if writes and not inside(path):
                refuse(event, args)
        elif event in path_events:
            paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike, int))]
            if event in ("os.chmod", "os.chown", "os.utime", "os.truncate") and paths:
                paths = paths[:1]
            elif event in ("os.rename", "os.link", "shutil.copyfile", "shutil.move"):
                paths = paths[:2]
            elif event == "os.symlink":
                paths = paths[1:2]
            else:
                paths = paths[:1]
            if not all(inside(p) for p in paths):
                refuse(event, args)
        elif event in refused_events:
            refuse(event, args)

    sys.addaudithook(guard)

def _set_limits(cpu_seconds, memory_bytes, output_bytes):
    """CPU seconds, address-space bytes and written-file bytes for this process and its children."""
    import resource
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (output_bytes, output_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

_program_path, _marker = sys.argv[1], sys.argv[2]
with open(_program_path, encoding="utf-8") as _f:
    _source = _f.read()
_set_limits(*(int(a) for a in sys.argv[3:6]))
_install_guard(os.getcwd(), _marker)
sys.argv = [_program_path]
_code = compile(_source, _program_path, "exec")
del _f, _source, _program_path, _marker, _install_guard, _set_limits
exec(_code, {"__name__": "__main__", "__builtins__": builtins})
'''


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """The outcome of one test case: `reason` is `"passed"` or why it failed; `detail` is a short
    excerpt (the program's stderr tail or a description) for humans; `seconds` is wall time."""

    passed: bool
    reason: str
    detail: str
    seconds: float


@functools.cache
def network_isolation_prefix() -> tuple[str, ...]:
    """The command prefix that starts a process in a fresh, empty network namespace, or `()` when
    this kernel/user cannot create one (the audit hook still refuses sockets then)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    candidates = [(unshare, "-n")] if os.geteuid() == 0 else []
    candidates.append((unshare, "-r", "-n"))
    for prefix in candidates:
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def outputs_match(actual: str, expected: str) -> bool:
    """APPS-style comparison: equal as whitespace-separated tokens (ignores trailing spaces and
    blank lines, which graders do not consider part of the answer)."""
    return actual.split() == expected.split()


def _tail(text: str, limit: int = 800) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _classify(returncode: int, stdout: str, stderr: str, expected: str) -> tuple[str, str]:
    if VIOLATION_MARKER in stderr:
        refused = [line for line in stderr.splitlines() if VIOLATION_MARKER in line]
        return SANDBOX_VIOLATION, refused[0].replace(VIOLATION_MARKER, "refused").strip()
    if "MemoryError" in stderr:
        return MEMORY_LIMIT, _tail(stderr)
    if returncode < 0:
        signum = -returncode
        if signum == signal.SIGXCPU:
            return TIMEOUT, "CPU time limit exceeded"
        if signum == signal.SIGXFSZ:
            return OUTPUT_LIMIT, "output size limit exceeded"
        return RUNTIME_ERROR, f"killed by {signal.Signals(signum).name}; " + _tail(stderr)
    if returncode != 0:
        return RUNTIME_ERROR, _tail(stderr) or f"exit code {returncode}"
    if not outputs_match(stdout, expected):
        return WRONG_OUTPUT, f"expected {_tail(expected, 200)!r}, got {_tail(stdout, 200)!r}"
    return PASSED, ""


def run_program(
    program: str,
    stdin: str,
    expected_stdout: str,
    *,
    time_limit_s: float = 4.0,
    memory_limit_mb: int = 512,
    output_limit_mb: int = 16,
) -> CaseResult:
    """Run `program` (Python source) once with `stdin`; compare its stdout with `expected_stdout`."""
    with tempfile.TemporaryDirectory(prefix="emergence-jax-sandbox-") as scratch:
        workdir = os.path.join(scratch, "work")
        os.mkdir(workdir)
        program_path = os.path.join(workdir, "program.py")
        harness_path = os.path.join(scratch, "harness.py")
        stdin_path, stdout_path, stderr_path = (os.path.join(scratch, n) for n in ("stdin", "stdout", "stderr"))
        with open(program_path, "w", encoding="utf-8") as f:
            f.write(program)
        with open(harness_path, "w", encoding="utf-8") as f:
            f.write(_HARNESS)
        with open(stdin_path, "w", encoding="utf-8") as f:
            f.write(stdin)
        environment = {
            "HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8",
        }
        limits = (int(time_limit_s) + 1, memory_limit_mb * 2**20, output_limit_mb * 2**20)
        command = [
            *network_isolation_prefix(), sys.executable, "-I", "-B", harness_path, program_path,
            VIOLATION_MARKER, *map(str, limits),
        ]
        started = time.monotonic()
        with open(stdin_path, "rb") as stdin_file, open(stdout_path, "wb") as stdout_file, open(stderr_path, "wb") as stderr_file:
            process = subprocess.Popen(
                command, stdin=stdin_file, stdout=stdout_file, stderr=stderr_file, cwd=workdir,
                env=environment, start_new_session=True,
            )
            timed_out = False
            try:
                returncode = process.wait(timeout=time_limit_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
                returncode = process.wait()
        seconds = time.monotonic() - started
        stdout = _read_text(stdout_path)
        stderr = _read_text(stderr_path)
    if timed_out:
        return CaseResult(False, TIMEOUT, f"exceeded {time_limit_s:g} s wall-clock limit", seconds)
    reason, detail = _classify(returncode, stdout, stderr, expected_stdout)
    return CaseResult(reason == PASSED, reason, detail, seconds)


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def run_test_cases(
    program: str,
    test_cases: Sequence[tuple[str, str]],
    *,
    time_limit_s: float = 4.0,
    memory_limit_mb: int = 512,
    stop_at_first_failure: bool = False,
) -> list[CaseResult]:
    """Run `program` against each (stdin, expected stdout) case, each in its own sandboxed process.

    With `stop_at_first_failure` the remaining cases are not run (as APPS "strict accuracy" needs
    only whether all pass); the result list is then shorter than `test_cases`.
    """
    results = []
    for stdin, expected in test_cases:
        result = run_program(program, stdin, expected, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb)
        results.append(result)
        if stop_at_first_failure and not result.passed:
            break
    return results
