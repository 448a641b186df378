"""Run a generated Python program against (stdin, expected stdout) test cases, in a jail.

Threat model. The programs are written by models, hundreds of thousands of them, and run on the
user's machine, usually as root. We assume a program may be written to escape: to read secrets
(files, the evaluator's environment or memory), to read the expected output, to write, delete or
re-permission files outside its folder, to reach the network, to harm the evaluator (signals,
`prlimit`, `ptrace`), to outlive its run, or to exhaust the machine. The jail must stop all of
this by kernel mechanisms, not by Python-level checks. Out of scope: kernel exploits (the jail
narrows the kernel surface, it does not remove it), side channels, and the wall-clock/CPU cost
of a program within its limits.

Each test case runs in a fresh jail (`jail_init.py`) made of:

- its own user, mount, PID, network, IPC, UTS and cgroup namespaces; the program runs as uid/gid
  65534 with no supplementary groups, every capability dropped (bounding set included),
  `no_new_privs`, nested user namespaces forbidden, and (on x86_64) a seccomp filter refusing
  syscalls that kernel exploits favour and programs never need (io_uring, userfaultfd, bpf,
  perf events, keyrings, ptrace, module loading, the mount API; i386/x32 conventions). When the evaluator is root, 65534 is
  `nobody` on the host and the jail's init stays another user (root inside the namespaces only),
  which the program can neither signal, trace nor `prlimit`. Without root, the kernel allows one
  mapped id, the evaluator's own: the program and init share it (init then ignores the program's
  signals as PID 1 does; a program that breaks it by `prlimit` only fails its own case), and the
  evaluator's supplementary groups stay;
- a fresh root: read-only, nosuid binds of `/usr`, a few files from `/etc` (loader cache,
  passwd/group, timezone, certificates, not `/etc/shadow` or other secrets), the interpreter's
  prefix and the evaluator's site-packages (so numpy, scipy and sympy import; `.pth` files are
  not run); nothing else from the host (no `/root`, `/home`, the repository, `/sys`, or the
  host's `/tmp`). World-readable files in those folders are readable, as they are to any user;
- one writable throwaway folder, `/tmp` (also the working directory, `HOME` and `TMPDIR`): a
  tmpfs capped in bytes and inodes that vanishes with the mount namespace, so no cleanup can be
  defeated by deep trees or permission changes; the expected output never enters the jail;
- a fresh `/proc` of the new PID namespace (the evaluator's processes are invisible, so it
  cannot be signalled, traced or `prlimit`ed), `/dev` with only null/zero/full/random/urandom,
  and no network interface but a down loopback;
- an empty environment (a fixed `HOME`, `TMPDIR`, `PATH`, `LANG` and single-thread BLAS settings);
- limits: wall clock (the jail's init is killed, and with it every process in the namespace,
  `setsid` or not), CPU seconds, address space (`RLIMIT_AS`, so a memory bomb ends in
  `MemoryError`), bytes per written file (`RLIMIT_FSIZE`, which also caps captured output),
  open files, and processes/threads (`RLIMIT_NPROC`, counted per jail).
  Worst-case memory of one jail: `max_processes x memory_limit_mb` plus the tmpfs caps.

A Python audit hook stays as a second layer: it refuses writing outside `/tmp`, `dir_fd` path
operations, new processes, sockets, `ctypes` loading and `gc` object walks, and fails the case
with reason `"sandbox_violation"` even when the program catches the `PermissionError`.

Namespaces are a kernel feature that can be switched off (containers without `CAP_SYS_ADMIN`,
`user.max_user_namespaces=0`, AppArmor's `restrict_unprivileged_userns` for non-root users). Then
`run_program` (and `check_jail`, which a command can call before generating) raises a one-line
`UserError`; setting `EMERGENCE_JAX_UNSAFE_NO_JAIL=1` runs the
programs with only the audit hook and resource limits (a guard against accidents, not against
code written to escape), after a warning on stderr.
"""

from __future__ import annotations

import dataclasses
import functools
import marshal
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from emergence_jax.errors import UserError

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

UNSAFE_NO_JAIL_ENV = "EMERGENCE_JAX_UNSAFE_NO_JAIL"
_INIT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jail_init.py")
_MEMORY_ERROR_EXIT = 86  # jail_init.MEMORY_ERROR_EXIT: the program died of an uncaught MemoryError
# Files from /etc that programs may need; everything else there (shadow, ssh keys, package
# manager credentials, /etc/environment) stays out of the jail.
_ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group",
                "nsswitch.conf", "hosts", "host.conf", "alternatives", "ssl", "ca-certificates",
                "mime.types", "os-release", "debian_version", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}")
_AUDIT_HOOK = True  # tests switch it off to show that the jail alone holds


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """The outcome of one test case: `reason` is `"passed"` or why it failed; `detail` is a short
    excerpt (the program's stderr tail or a description) for humans; `seconds` is wall time."""

    passed: bool
    reason: str
    detail: str
    seconds: float


def outputs_match(actual: str, expected: str) -> bool:
    """APPS-style comparison: equal as whitespace-separated tokens (ignores trailing spaces and
    blank lines, which graders do not consider part of the answer)."""
    return actual.split() == expected.split()


def _tail(text: str, limit: int = 800) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _covered(path: str, folders: Sequence[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


@functools.cache
def jail_view() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], tuple[str, ...]]:
    """What the jail shows of this machine: (paths bound read-only, (link, target) symlinks,
    the program's `sys.path`). Computed from this interpreter, so the program runs with the
    evaluator's Python and packages."""
    binds: list[str] = []
    links: dict[str, str] = {}

    def show(path: str) -> None:
        # Bind the real folder or file; recreate every symlink on the literal path to it.
        path = os.path.abspath(path)
        head = path
        while head != "/":
            if os.path.islink(head):
                links[head] = os.readlink(head)
            head = os.path.dirname(head)
        real = os.path.realpath(path)
        if real != "/" and os.path.exists(real):
            binds.append(real)

    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            links[top] = os.readlink(top)
        elif os.path.isdir(top):
            binds.append(top)
    for name in _ETC_ENTRIES:
        path = os.path.join("/etc", name)
        if os.path.lexists(path):
            show(path)
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for prefix in sorted(prefixes):
        show(prefix)
    executable = sys.executable
    for _ in range(40):  # the interpreter's symlink chain, each hop shown
        show(os.path.dirname(executable))
        if not os.path.islink(executable):
            break
        executable = os.path.join(os.path.dirname(executable), os.readlink(executable))
    real_prefixes = [os.path.realpath(p) for p in prefixes]
    sys_path = []
    for entry in sys.path:
        if not entry or not os.path.exists(entry):
            continue
        entry = os.path.abspath(entry)
        if _covered(os.path.realpath(entry), real_prefixes) or os.path.basename(entry) in ("site-packages", "dist-packages"):
            sys_path.append(entry)
            show(entry)
    unique = []
    for path in sorted(set(binds), key=lambda p: (p.count("/"), p)):
        if not _covered(path, unique):
            unique.append(path)
    return tuple(unique), tuple(sorted(links.items())), tuple(sys_path)


def _warn_unsafe_once() -> None:
    if not getattr(_warn_unsafe_once, "done", False):
        _warn_unsafe_once.done = True
        print(f"warning: {UNSAFE_NO_JAIL_ENV}=1: generated programs run WITHOUT the jail (audit hook and "
              "resource limits only); do not use this on a machine with anything to protect", file=sys.stderr)


def _unsafe_no_jail() -> bool:
    return os.environ.get(UNSAFE_NO_JAIL_ENV, "").strip() not in ("", "0")


def _classify(status: str, returncode: int, stdout: str, stderr: str, expected: str) -> tuple[str, str]:
    """The reason for one run, from the jail's status line (or, without the jail, the exit code)."""
    if status == "timeout":
        return TIMEOUT, ""
    if status.startswith("init-died "):
        return RUNTIME_ERROR, f"the program broke the jail's init (wait status {status.split()[1]}); " + _tail(stderr)
    if status.startswith("exit "):
        wait_status = int(status.split()[1])
        returncode = -os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else os.WEXITSTATUS(wait_status)
    if VIOLATION_MARKER in stderr:
        refused = [line for line in stderr.splitlines() if VIOLATION_MARKER in line]
        return SANDBOX_VIOLATION, refused[0].replace(VIOLATION_MARKER, "refused").strip()
    if returncode < 0:
        signum = -returncode
        if signum == signal.SIGXCPU:
            return TIMEOUT, "CPU time limit exceeded"
        if signum == signal.SIGXFSZ:
            return OUTPUT_LIMIT, "output size limit exceeded"
        return RUNTIME_ERROR, f"killed by {signal.Signals(signum).name}; " + _tail(stderr)
    if returncode == _MEMORY_ERROR_EXIT:
        return MEMORY_LIMIT, _tail(stderr)
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
    max_processes: int = 16,
) -> CaseResult:
    """Run `program` (Python source) once with `stdin`, in a fresh jail; compare its stdout with
    `expected_stdout`. Limits: `time_limit_s` wall seconds (CPU seconds: its ceiling + 1),
    `memory_limit_mb` MiB of address space per process, `output_limit_mb` MiB per written file
    (stdout, stderr, files in /tmp; /tmp holds at most 4x that), `max_processes` processes and
    threads. Raises `UserError` when this machine cannot build the jail."""
    for name, value in (("time_limit_s", time_limit_s), ("memory_limit_mb", memory_limit_mb),
                        ("output_limit_mb", output_limit_mb), ("max_processes", max_processes)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise UserError(f"sandbox: {name} is {value!r}; give a positive finite number")
    jail = not _unsafe_no_jail()
    output_bytes = int(output_limit_mb * 2**20)
    limits = {"cpu_s": int(time_limit_s) + 1, "memory_bytes": int(memory_limit_mb * 2**20), "file_bytes": output_bytes,
              "open_files": 256}
    binds, links, sys_path = jail_view()
    config = {"program": program, "time_limit_s": time_limit_s, "limits": limits, "jail": jail,
              "audit": _AUDIT_HOOK, "marker": VIOLATION_MARKER, "binds": binds, "symlinks": links,
              "sys_path": sys_path,
              "scratch": {"tmp_bytes": 4 * output_bytes, "tmp_inodes": 16384, "shm_bytes": 2**20}}
    if jail:
        limits["processes"] = int(max_processes)
    workdir = None
    if not jail:
        _warn_unsafe_once()
        workdir = tempfile.mkdtemp(prefix="emergence-jax-sandbox-")
        config["workdir"] = workdir
    try:
        with (tempfile.TemporaryFile() as config_file, tempfile.TemporaryFile() as status_file,
              tempfile.TemporaryFile() as stdin_file, tempfile.TemporaryFile() as stdout_file,
              tempfile.TemporaryFile() as stderr_file):
            config_file.write(marshal.dumps(config))
            config_file.seek(0)
            stdin_file.write(stdin.encode("utf-8"))
            stdin_file.seek(0)
            # Nameless files (O_TMPFILE): only their descriptors reach them. Readable/writable by
            # the jail's user so that /dev/stdin and /dev/stdout, which reopen them, work too.
            os.fchmod(stdin_file.fileno(), 0o604)
            os.fchmod(stdout_file.fileno(), 0o602)
            os.fchmod(stderr_file.fileno(), 0o602)
            started = time.monotonic()
            returncode, killed = _run_init(config_file.fileno(), status_file.fileno(), stdin_file, stdout_file,
                                           stderr_file, workdir, time_limit_s + (10 if jail else 0))
            seconds = time.monotonic() - started
            status = (_read_limited(status_file, 4096).strip().splitlines() or [""])[0]
            stdout = _read_limited(stdout_file, output_bytes)
            stderr = _read_limited(stderr_file, output_bytes)
    finally:
        if workdir is not None:
            _remove_tree(workdir)
    if killed and not status:
        status = "timeout"
    _raise_for_setup(status, returncode, stderr, jail)
    reason, detail = _classify(status, returncode, stdout, stderr, expected_stdout)
    if reason == TIMEOUT and not detail:
        detail = f"exceeded {time_limit_s:g} s wall-clock limit"
    return CaseResult(reason == PASSED, reason, detail, seconds)


def _run_init(config_fd: int, status_fd: int, stdin_file, stdout_file, stderr_file, workdir, wait_s: float) -> tuple[int, bool]:
    """Start jail_init.py and wait; past `wait_s` (a backstop in jail mode, where the jail's own
    launcher enforces the limit) kill its process group. Returns (exit code, killed)."""
    command = [sys.executable, "-I", "-S", "-B", "-X", "utf8", _INIT_SCRIPT, str(config_fd), str(status_fd)]
    process = subprocess.Popen(command, stdin=stdin_file, stdout=stdout_file, stderr=stderr_file,
                               cwd=workdir or "/", env={}, pass_fds=(config_fd, status_fd), start_new_session=True)
    try:
        return process.wait(timeout=wait_s), False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return process.wait(), True


def _read_limited(file, limit: int) -> str:
    file.seek(0)
    return file.read(limit).decode("utf-8", "replace")


def _raise_for_setup(status: str, returncode: int, stderr: str, jail: bool) -> None:
    """Failures to build the jail are the machine's, not the program's: say so in one line. Only
    the jail's own processes write the status; the program never holds its descriptor."""
    fix = (f"run as root, or allow user namespaces (sysctl user.max_user_namespaces > 0; on Ubuntu "
           f"kernel.apparmor_restrict_unprivileged_userns=0; in a container, CAP_SYS_ADMIN or a seccomp profile "
           f"allowing unshare), or set {UNSAFE_NO_JAIL_ENV}=1 to run generated programs without the jail (unsafe)")
    if status.startswith("unavailable "):
        raise UserError(f"sandbox: this machine refuses the namespaces the jail needs ({status.removeprefix('unavailable ')}); {fix}")
    if status.startswith("setup-error "):
        raise UserError(f"sandbox: cannot build the jail on this machine ({status.removeprefix('setup-error ')}); {fix}")
    if not jail or status.startswith(("exit ", "init-died ")) or status == "timeout":
        return
    raise RuntimeError(f"sandbox: the jail ended without a status (launcher exit code {returncode}): {_tail(stderr, 300)}")


def _remove_tree(path: str) -> None:
    """Delete a folder a program wrote into (without the jail), in time linear in its size:
    every sub-folder is first moved up to `path` (so a 5,000-deep tree, which `shutil.rmtree`
    cannot recurse into, becomes a flat one) and made accessible again (the program may have
    removed its permissions). Failures are reported on stderr, never raised."""
    moved = 0
    pending = [path]
    try:
        while pending:
            folder = pending.pop()
            os.chmod(folder, 0o700)
            with os.scandir(folder) as entries:
                for entry in list(entries):
                    if entry.is_dir(follow_symlinks=False):
                        moved += 1
                        flat = os.path.join(path, f".emergence-jax-flat-{moved}")
                        os.rename(entry.path, flat)
                        pending.append(flat)
                    else:
                        os.unlink(entry.path)
        shutil.rmtree(path)
    except OSError as error:
        print(f"warning: sandbox: could not remove {path}: {error}", file=sys.stderr)


@functools.cache
def check_jail() -> None:
    """Build one jail and run a trivial program in it (once per process): raises `UserError` when
    this machine refuses the namespaces, so a command can stop before it generates anything."""
    result = run_program("print(7 * 6)", "", "42", time_limit_s=30)
    if not result.passed:
        raise RuntimeError(f"sandbox: a trivial program failed in the jail: {result.reason}: {result.detail}")


def run_test_cases(
    program: str,
    test_cases: Sequence[tuple[str, str]],
    *,
    time_limit_s: float = 4.0,
    memory_limit_mb: int = 512,
    stop_at_first_failure: bool = False,
) -> list[CaseResult]:
    """Run `program` against each (stdin, expected stdout) case, each in its own jail.

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
