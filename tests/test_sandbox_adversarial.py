"""Programs written to escape, run through `sandbox.run_program`: the jail must contain each one.

Every case checks the same things afterwards: canaries outside the throwaway folder are unchanged
(a world-writable folder and file the jail shows read-only, a folder the jail does not show, and
a folder in the host's /tmp), a secret placed in this process's environment appears nowhere in
the program's output, the evaluator (this process) and a sentinel process it owns are alive with
their limits unchanged, and the reported reason is one that fits the attempt. Many programs
bypass the audit hook on purpose (or run with it switched off) to show that the jail alone holds.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid

import pytest

from emergence_jax.evaluate import sandbox

SECRET = f"SECRET-{uuid.uuid4().hex}"
EXPECTED_TOKEN = f"EXPECTED-{uuid.uuid4().hex}"

# A helper the programs paste in: start a process through _posixsubprocess.fork_exec, which raises
# no audit event (the first bypass in the issue). Returns the pid.
SPAWN = textwrap.dedent('''
    import _posixsubprocess, os
    def spawn(argv, new_session=False):
        r, w = os.pipe()
        args = [[os.fsencode(a) for a in argv], [os.fsencode(argv[0])], True, (w,), None, None,
                -1, -1, -1, -1, -1, -1, r, w, True, new_session, -1, None, None, None, -1, None]
        try:
            pid = _posixsubprocess.fork_exec(*args, False)
        except TypeError:
            pid = _posixsubprocess.fork_exec(*args)
        os.close(w)
        error = os.read(r, 1000)
        os.close(r)
        if error:
            raise OSError(error.decode(errors="replace"))
        return pid
''')


def _snapshot(root: pathlib.Path) -> dict:
    """Every entry under `root`: kind, mode, size, mtime (ns) and content of files."""
    state = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        state[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return state


@dataclasses.dataclass
class Host:
    visible: pathlib.Path  # world-writable, inside a folder the jail shows read-only (site-packages)
    hidden: pathlib.Path  # outside /tmp, not shown in the jail
    host_tmp: pathlib.Path  # in the host's /tmp (the jail has its own /tmp)
    sentinel: subprocess.Popen  # a process of the evaluator's, offered to programs as a target
    repo: pathlib.Path

    def substitute(self, program: str) -> str:
        return (program.replace("@VISIBLE@", str(self.visible)).replace("@HIDDEN@", str(self.hidden))
                .replace("@HOSTTMP@", str(self.host_tmp)).replace("@SENTINEL@", str(self.sentinel.pid))
                .replace("@EVALUATOR@", str(os.getpid())).replace("@REPO@", str(self.repo))
                .replace("@SPAWN@", SPAWN).replace("@TOKEN@", EXPECTED_TOKEN.split("-")[0] + "-"))


def _site_packages() -> pathlib.Path:
    return pathlib.Path(next(p for p in sandbox.jail_view()[2] if p.endswith("-packages")))


@pytest.fixture(scope="module")
def jail_available():
    if os.environ.get(sandbox.UNSAFE_NO_JAIL_ENV):
        pytest.skip(f"{sandbox.UNSAFE_NO_JAIL_ENV} is set: the jail is off")
    try:
        sandbox.check_jail()
    except sandbox.UserError as error:
        pytest.skip(f"this kernel refuses the jail's namespaces: {error}")


@pytest.fixture()
def host(jail_available, tmp_path, monkeypatch):
    monkeypatch.setenv("EMERGENCE_JAX_JAIL_TEST_SECRET", SECRET)
    tag = uuid.uuid4().hex[:12]
    visible = _site_packages() / f"_emergence_jax_jail_canary_{tag}"
    hidden = pathlib.Path(tempfile.mkdtemp(prefix="emergence-jax-jail-canary-", dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None))
    host_tmp = tmp_path / "canary"
    for folder in (visible, hidden, host_tmp):
        folder.mkdir(exist_ok=True)
        (folder / "file.txt").write_text("original")
        (folder / "sub").mkdir()
        (folder / "sub" / "deep.txt").write_text("original")
        os.chmod(folder / "file.txt", 0o666)
        os.chmod(folder / "sub", 0o777)
        os.chmod(folder, 0o777)
    sentinel = subprocess.Popen(["sleep", "300"])
    before = {name: _snapshot(folder) for name, folder in (("visible", visible), ("hidden", hidden), ("host_tmp", host_tmp))}
    limits_before = {r: resource.getrlimit(r) for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC, resource.RLIMIT_AS)}
    repo = pathlib.Path(__file__).resolve().parents[1]
    try:
        yield Host(visible, hidden, host_tmp, sentinel, repo)
        for name, folder in (("visible", visible), ("hidden", hidden), ("host_tmp", host_tmp)):
            assert _snapshot(folder) == before[name], f"the {name} canary folder changed"
        assert sentinel.poll() is None, "the sentinel process was killed"
        assert {r: resource.getrlimit(r) for r in limits_before} == limits_before, "the evaluator's limits changed"
        sentinel_limits = subprocess.run(["prlimit", "--pid", str(sentinel.pid), "--nofile", "--raw", "--noheadings", "-o", "SOFT,HARD"],
                                         capture_output=True, text=True).stdout.split()
        assert sentinel_limits == [str(x) for x in limits_before[resource.RLIMIT_NOFILE]] or not shutil.which("prlimit")
        assert not (repo / "escaped").exists(), "a file appeared in the repository"
        assert not pathlib.Path("/escaped").exists()
    finally:
        sentinel.kill()
        sentinel.wait()
        shutil.rmtree(visible, ignore_errors=True)
        shutil.rmtree(hidden, ignore_errors=True)


@pytest.fixture()
def outputs(monkeypatch):
    """The full stdout/stderr of every run (CaseResult keeps only a tail)."""
    seen = []
    classify = sandbox._classify

    def recording(status, returncode, stdout, stderr, expected):
        seen.append((stdout, stderr))
        return classify(status, returncode, stdout, stderr, expected)

    monkeypatch.setattr(sandbox, "_classify", recording)
    return seen


def _run(host, outputs, program, expected="ESCAPED", *, hook=True, monkeypatch=None, **limits):
    if not hook:
        monkeypatch.setattr(sandbox, "_AUDIT_HOOK", False)
    result = sandbox.run_program(host.substitute(program), "", host.substitute(expected), **limits)
    if not hook:
        monkeypatch.setattr(sandbox, "_AUDIT_HOOK", True)
    stdout, stderr = outputs[-1]
    for text in (stdout, stderr, result.detail):
        assert SECRET not in text
    for text in (stdout, stderr):
        assert "ESCAPED" not in text, (result, stdout, stderr)
    return result, stdout, stderr


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    program: str
    reasons: tuple[str, ...]  # the reasons that fit
    hook: bool = True  # False: the audit hook is off, only the jail stands
    expected: str = "ESCAPED"
    limits: tuple = ()


V, R, W, T, P = "sandbox_violation", "runtime_error", "wrong_output", "timeout", "passed"

CASES = [
    Case("fork_exec_shell_writes_outside", '''
@SPAWN@
targets = ["@VISIBLE@/file.txt", "@VISIBLE@/new.txt", "@HIDDEN@/new.txt", "@HOSTTMP@/new.txt", "/escaped", "/etc/escaped", "@REPO@/escaped"]
script = "; ".join(f"echo pwned >> {t} && echo ESCAPED {t}" for t in targets) + "; rm -rf @VISIBLE@/sub && echo ESCAPED rm"
pid = spawn(["/bin/sh", "-c", script])
print(os.waitpid(pid, 0)[1])
''', (W,)),
    Case("os_open_with_dir_fd", '''
import os
for folder in ["@VISIBLE@", "/", "/etc"]:
    try:
        d = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        fd = os.open("file.txt" if folder == "@VISIBLE@" else "escaped", os.O_WRONLY | os.O_CREAT | os.O_APPEND, dir_fd=d)
        os.write(fd, b"pwned")
        print("ESCAPED", folder)
    except OSError as error:
        print(folder, type(error).__name__)
''', (W,), hook=False),
    Case("unlink_and_rmtree_with_dir_fd", '''
import os, shutil
d = os.open("@VISIBLE@", os.O_RDONLY | os.O_DIRECTORY)
for attempt in (lambda: os.unlink("file.txt", dir_fd=d), lambda: os.rmdir("sub", dir_fd=d),
                lambda: shutil.rmtree("sub", dir_fd=d), lambda: os.rename("file.txt", "moved.txt", src_dir_fd=d, dst_dir_fd=d)):
    try:
        attempt()
        print("ESCAPED")
    except OSError as error:
        print(type(error).__name__)
''', (V,)),
    Case("unlink_and_rmtree_with_dir_fd_no_hook", '''
import os, shutil
d = os.open("@VISIBLE@", os.O_RDONLY | os.O_DIRECTORY)
for attempt in (lambda: os.unlink("file.txt", dir_fd=d), lambda: os.rmdir("sub", dir_fd=d),
                lambda: shutil.rmtree("sub", dir_fd=d), lambda: os.chmod("file.txt", 0, dir_fd=d)):
    try:
        attempt()
        print("ESCAPED")
    except OSError as error:
        print(type(error).__name__)
''', (W,), hook=False),
    Case("sqlite3_connect_writes_outside", '''
import sqlite3
for path in ["@VISIBLE@/db.sqlite", "@VISIBLE@/sub/db.sqlite", "/db.sqlite"]:
    try:
        db = sqlite3.connect(path)
        db.execute("create table t (x)")
        db.commit()
        print("ESCAPED", path)
    except Exception as error:
        print(type(error).__name__)
''', (V,)),
    Case("sqlite3_connect_writes_outside_no_hook", '''
import sqlite3
for path in ["@VISIBLE@/db.sqlite", "@VISIBLE@/sub/db.sqlite", "/db.sqlite"]:
    try:
        db = sqlite3.connect(path)
        db.execute("create table t (x)")
        db.commit()
        print("ESCAPED", path)
    except Exception as error:
        print(type(error).__name__)
''', (W,), hook=False),
    Case("replaced_builtins_before_a_write", '''
import builtins, os
builtins.any = lambda *a, **k: False
builtins.all = lambda *a, **k: True
builtins.isinstance = lambda *a, **k: False
try:
    with open("@VISIBLE@/file.txt", "a") as f:
        f.write("pwned")
    print("ESCAPED")
except OSError as error:
    print(type(error).__name__)
''', (V,) if not str(_site_packages()).startswith("/tmp/") else (V, "wrong_output")),  # under /tmp the hook allows the path; the read-only bind refuses the write
    Case("read_etc_shadow", '''
for path in ["/etc/shadow", "/etc/gshadow", "/root/.bash_history", "/etc/environment"]:
    try:
        print("ESCAPED", open(path).read()[:200])
    except OSError as error:
        print(path, type(error).__name__)
''', (W,)),
    Case("parent_environment", '''
import os
found = []
for pid in [os.getppid(), 1, "self"] + [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        data = open(f"/proc/{pid}/environ", "rb").read()
        if b"SECRET" in data:
            print("ESCAPED", data)
        found.append(len(data))
    except OSError as error:
        found.append(type(error).__name__)
print(found, sorted(os.environ))
''', (W,)),
    Case("parent_memory_for_the_expected_output", '''
import os, re
hits = set()
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb")
    except OSError as error:
        print(pid, type(error).__name__)
        continue
    for line in maps:
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        try:
            mem.seek(start)
            chunk = mem.read(min(end - start, 1 << 24))
        except (OSError, ValueError, OverflowError):
            continue
        hits.update(m.decode() for m in re.findall(rb"@TOKEN@[0-9a-f]{32}", chunk))
hits.discard("@TOKEN@" + "0" * 32)
print("\\n".join(sorted(hits)) or "no expected output found")
''', (W,), expected=EXPECTED_TOKEN, limits=(("time_limit_s", 20),)),
    Case("kill_the_parent_and_evaluator", '''
import os, signal
results = []
for pid in [os.getppid(), 1, @EVALUATOR@, @SENTINEL@]:
    for attempt in (lambda: os.kill(pid, signal.SIGKILL), lambda: signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL)):
        try:
            attempt()
            results.append("sent")
        except OSError as error:
            results.append(type(error).__name__)
print(results)
''', (V,)),
    Case("kill_everything_no_hook", '''
import os, signal, time
results = []
for pid in [os.getppid(), 1, @EVALUATOR@, @SENTINEL@, -1]:
    for attempt in (lambda: os.kill(pid, signal.SIGKILL), lambda: signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL),
                    lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGTERM)):
        try:
            attempt()
            results.append("sent")
        except (OSError, ValueError) as error:
            results.append(type(error).__name__)
time.sleep(0.2)
print("alive", results)
''', (W,), hook=False),
    Case("prlimit_on_the_parent", '''
import os, resource
results = []
for pid in [os.getppid(), 1, @EVALUATOR@, @SENTINEL@]:
    for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC, resource.RLIMIT_AS):
        try:
            resource.prlimit(pid, r, (0, 0))
            results.append("set")
        except OSError as error:
            results.append(type(error).__name__)
print(results)
''', (W,), hook=False),
    Case("ptrace_and_setns_via_tools", '''
@SPAWN@
commands = [["/usr/bin/nsenter", "-t", "1", "-a", "sh", "-c", "echo ESCAPED > @VISIBLE@/file.txt"],
            ["/usr/bin/unshare", "-r", "sh", "-c", "echo ESCAPED > @VISIBLE@/file.txt"],
            ["/usr/bin/mount", "-o", "remount,rw", "/usr"],
            ["/usr/bin/su", "-c", "echo ESCAPED > @VISIBLE@/file.txt"],
            ["/usr/bin/gdb", "-p", "1", "-batch", "-ex", "call (int)system(\\"touch /escaped\\")"]]
for command in commands:
    if not os.path.exists(command[0]):
        continue
    pid = spawn(command)
    print(command[0], os.waitpid(pid, 0)[1])
''', (W,)),
    Case("native_library_from_the_working_folder", '''
import importlib.machinery, importlib.util, base64
open("evil.so", "wb").write(base64.b64decode(LIBRARY))
try:
    spec = importlib.util.spec_from_file_location("evil", "/tmp/evil.so", loader=importlib.machinery.ExtensionFileLoader("evil", "/tmp/evil.so"))
    importlib.util.module_from_spec(spec)
except ImportError as error:
    print("import failed:", error)
''', (W,)),
    Case("native_library_from_a_memfd", '''
import importlib.machinery, importlib.util, base64, os
fd = os.memfd_create("evil", 0)
os.write(fd, base64.b64decode(LIBRARY))
path = f"/proc/self/fd/{fd}"
try:
    spec = importlib.util.spec_from_file_location("evil", path, loader=importlib.machinery.ExtensionFileLoader("evil", path))
    importlib.util.module_from_spec(spec)
except ImportError as error:
    print("import failed:", error)
''', (W, R), hook=False),
    Case("write_to_root_tmp_and_repo", '''
import os
for path in ["/escaped", "@HOSTTMP@/file.txt", "@HOSTTMP@/new.txt", "@REPO@/escaped", "@VISIBLE@/new.txt", "/usr/escaped", "/proc/escaped", "/dev/escaped"]:
    try:
        with open(path, "a") as f:
            f.write("pwned")
        print("ESCAPED", path)
    except OSError as error:
        print(type(error).__name__)
open("/tmp/mine.txt", "w").write("allowed")
''', (W,), hook=False),
    Case("remount_and_namespaces_no_hook", '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
results = [libc.unshare(0x10000000), libc.unshare(0x00020000), libc.mount(b"none", b"/usr", None, 32 | 4096, None),
           libc.mount(b"tmpfs", b"/etc", b"tmpfs", 0, None), libc.chroot(b"/tmp"), libc.setuid(0), libc.ptrace(16, 1, 0, 0)]
print([r if r == 0 else os.strerror(ctypes.get_errno()) for r in results])
if any(r == 0 for r in results[:6]):
    print("ESCAPED")
''', (W,), hook=False),
    Case("kernel_attack_surface_syscalls_x86_64", '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
names = {425: "io_uring_setup", 323: "userfaultfd", 321: "bpf", 298: "perf_event_open", 250: "keyctl",
         101: "ptrace", 310: "process_vm_readv", 175: "init_module", 272: "unshare", 0x40000000 + 2: "x32 open"}
for number, name in names.items():
    result = libc.syscall(number, 0, 0, 0, 0, 0)
    errno = ctypes.get_errno()
    print(name, os.strerror(errno) if result < 0 else "ESCAPED")
''', (W,), hook=False),
    Case("huge_stdout", '''
import sys
chunk = "x" * 65536
while True:
    sys.stdout.write(chunk)
''', ("output_limit",), limits=(("output_limit_mb", 4),)),
    Case("huge_file", '''
chunk = "y" * 65536
with open("big.bin", "w") as f:
    while True:
        f.write(chunk)
''', ("output_limit",), limits=(("output_limit_mb", 4),)),
    Case("fill_the_throwaway_folder", '''
import os
for i in range(100000):
    with open(f"f{i}", "w") as f:
        f.write("z" * 3000000)
''', (R,), hook=False, limits=(("output_limit_mb", 4),)),
    Case("network_connect_no_hook", '''
import socket
results = []
for family, address in ((socket.AF_INET, ("127.0.0.1", PORT)), (socket.AF_INET, ("8.8.8.8", 53)), (socket.AF_INET6, ("::1", PORT))):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(address)
        print("ESCAPED", s.recv(5))
    except OSError as error:
        results.append(type(error).__name__)
try:
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.connect(ABSTRACT)
    print("ESCAPED", u.recv(5))
except OSError as error:
    results.append(type(error).__name__)
print(results)
''', (W,), hook=False),
    Case("file_descriptors_and_status_channel", '''
import os
print(sorted(os.listdir("/proc/self/fd")))
for fd in range(3, 64):
    try:
        os.write(fd, b"exit 0\\n")
        print("ESCAPED", fd)
    except OSError:
        pass
''', (W,), hook=False),
]


def _compile_library(tmp_path: pathlib.Path, host: Host) -> str | None:
    """A shared library whose constructor tries to write outside; None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    targets = [f"{host.visible}/file.txt", f"{host.visible}/so.txt", f"{host.hidden}/so.txt", "/escaped", "/etc/escaped"]
    source = tmp_path / "evil.c"
    source.write_text(textwrap.dedent('''
        #include <fcntl.h>
        #include <stdio.h>
        #include <unistd.h>
        __attribute__((constructor)) static void evil(void) {
            const char *targets[] = {%s};
            printf("constructor ran\\n");
            for (unsigned i = 0; i < sizeof targets / sizeof *targets; i++) {
                int fd = open(targets[i], O_WRONLY | O_CREAT | O_APPEND, 0666);
                if (fd >= 0 && write(fd, "pwned", 5) == 5) printf("ESCAPED %%s\\n", targets[i]);
            }
            fflush(stdout);
        }
    ''') % ", ".join(f'"{t}"' for t in targets))
    library = tmp_path / "evil.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True, capture_output=True)
    import base64

    return base64.b64encode(library.read_bytes()).decode()


@pytest.fixture()
def listeners():
    """A TCP listener on this host's loopback and an abstract unix socket, both answering 'hello'."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    abstract_name = f"\0emergence-jax-jail-test-{uuid.uuid4().hex}"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(abstract_name)
    unix.listen()

    def serve(server):
        try:
            while True:
                connection, _ = server.accept()
                connection.sendall(b"hello")
                connection.close()
        except OSError:
            return

    for server in (tcp, unix):
        threading.Thread(target=serve, args=(server,), daemon=True).start()
    yield tcp.getsockname()[1], abstract_name
    tcp.close()
    unix.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_escape_is_contained(case, host, outputs, monkeypatch, tmp_path, listeners):
    program = case.program
    if case.name.endswith("_x86_64") and os.uname().machine != "x86_64":
        pytest.skip("the seccomp filter (and these syscall numbers) are x86_64 only")
    if "LIBRARY" in program:
        library = _compile_library(tmp_path, host)
        if library is None:
            pytest.skip("no C compiler (cc/gcc) to build the native library")
        program = f"LIBRARY = {library!r}\n" + program
    if "PORT" in program:
        port, abstract_name = listeners
        outside = subprocess.run([sys.executable, "-c", f"import socket; print(socket.create_connection(('127.0.0.1', {port})).recv(5))"],
                                 capture_output=True, text=True, timeout=30)
        assert "hello" in outside.stdout, "control: the listener answers outside the jail"
        program = f"PORT = {port}\nABSTRACT = {abstract_name!r}\n" + program
    limits = {"time_limit_s": 10, **dict(case.limits)}
    result, stdout, stderr = _run(host, outputs, program, case.expected, hook=case.hook, monkeypatch=monkeypatch, **limits)
    assert result.reason in case.reasons, (result, stdout[-2000:], stderr[-2000:])
    if case.name.startswith("kernel_attack_surface"):
        assert stdout.count("Operation not permitted") == 10, stdout
    assert not result.passed
    if case.name == "native_library_from_a_memfd" and "constructor ran" not in stdout:
        pytest.skip("the kernel did not load a library from a memfd (nothing ran to contain): " + stdout[-300:])


IDENTITY = '''
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
hidden = ["/home", "/sys", "/var", "/etc/shadow", "/etc/environment", "/etc/pip.conf", "/root/.bash_history",
          "@REPO@/.git", "@REPO@/emergence_jax", "@HIDDEN@", "@HOSTTMP@"]
print(json.dumps({
    "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
    "caps": {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    "no_new_privs": int(status["NoNewPrivs"]), "seccomp": int(status["Seccomp"]), "pid": os.getpid(), "ppid": os.getppid(),
    "shown": [p for p in hidden if os.path.lexists(p)], "root": sorted(os.listdir("/")),
    "environ": sorted(os.environ), "fds": sorted(os.listdir("/proc/self/fd")),
    "max_user_namespaces": open("/proc/sys/user/max_user_namespaces").read().strip(),
    "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
}))
'''


def _bound_tops() -> set[str]:
    """The top-level folders the jail shows because the interpreter and its packages live there
    (e.g. `work` for /work/main/.venv, `check` for a clone under /check)."""
    from emergence_jax.evaluate.sandbox import jail_view

    binds, links, _ = jail_view()
    return {path.split("/")[1] for path in [*binds, *(link for link, _ in links)]}


def _check_identity(report: dict, *, root: bool = True) -> None:
    """Without root the evaluator's supplementary groups cannot be dropped (the kernel forbids
    setgroups in a user namespace an unprivileged user makes); they show as unmapped (65534)."""
    assert report["ids"][:4] == [65534] * 4
    assert report["ids"][4] == [] if root else set(report["ids"][4]) <= {65534}
    assert report["caps"] == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)
    assert report["no_new_privs"] == 1
    assert report["seccomp"] == (2 if os.uname().machine == "x86_64" else 0)
    assert report["shown"] == []
    assert set(report["root"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr"} | _bound_tops()
    assert report["environ"] == ["HOME", "LANG", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PATH", "TMPDIR"]
    assert report["fds"] == ["0", "1", "2", "3"]  # 3: the listing itself
    assert report["max_user_namespaces"] == "0"
    assert report["ppid"] == 1 and report["processes"] == [1, report["pid"]], "only the jail's init and the program"


def test_what_the_program_is_and_sees(host, outputs, monkeypatch):
    import json

    result, stdout, _ = _run(host, outputs, IDENTITY, "{}", hook=False, monkeypatch=monkeypatch)
    assert result.reason == "wrong_output", result
    _check_identity(json.loads(stdout))


def test_non_root_evaluator_gets_the_same_jail(host):
    """The path for evaluators without root: a user namespace where the evaluator is uid 1000."""
    import json

    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs util-linux unshare and root to simulate a non-root evaluator")
    script = textwrap.dedent('''
        import os, sys
        assert os.geteuid() == 1000
        from emergence_jax.evaluate import sandbox
        sandbox._AUDIT_HOOK = False
        classify, seen = sandbox._classify, []
        sandbox._classify = lambda status, code, out, err, expected: seen.append(out) or classify(status, code, out, err, expected)
        sandbox.run_program(sys.argv[1], "", "")
        write = sandbox.run_program(sys.argv[2], "", "ESCAPED")
        print(seen[0].strip())
        print(write.reason, write.detail.replace(chr(10), " "))
    ''')
    write = host.substitute("open('@VISIBLE@/file.txt', 'a').write('pwned')\nprint('ESCAPED')\n")
    completed = subprocess.run([unshare, "--user", "--map-user=1000", "--map-group=1000", sys.executable, "-c", script,
                                host.substitute(IDENTITY), write], capture_output=True, text=True, timeout=60,
                               cwd=pathlib.Path(__file__).resolve().parents[1])
    assert completed.returncode == 0, completed.stderr
    identity_line, write_line = completed.stdout.strip().splitlines()[-2:]
    _check_identity(json.loads(identity_line), root=False)
    assert write_line.startswith("runtime_error") and "Read-only file system" in write_line, write_line


def _host_processes_with(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and pid != str(os.getpid()):
            found.append(f"{pid}: {cmdline!r}")
    return found


def test_setsid_children_do_not_outlive_the_run(host, outputs, monkeypatch):
    marker = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    program = f'''
@SPAWN@
spawn(["/bin/sleep", "{marker}"], new_session=True)
spawn(["/bin/sh", "-c", "setsid /bin/sleep {marker} & (trap '' HUP TERM; /bin/sleep {marker}) &"], new_session=True)
import time
time.sleep(0.3)
print("done")
'''
    result, stdout, _ = _run(host, outputs, program, "done", time_limit_s=10)
    assert result.passed, result
    assert _host_processes_with(marker) == []


def test_fork_bomb_is_bounded(host, outputs, monkeypatch):
    marker = f"bomb{uuid.uuid4().hex[:8]}"
    program = f'''
@SPAWN@
spawn(["/bin/sh", "-c", ": {marker}; b() {{ b | b & }}; b"])
import time
time.sleep(30)
'''
    started = time.monotonic()
    result, _, _ = _run(host, outputs, program, "done", time_limit_s=2)
    assert result.reason == "timeout", result
    assert time.monotonic() - started < 15
    assert _host_processes_with(marker) == []
    python_bomb = "import os\nwhile True:\n    os.fork()\n"
    result, _, stderr = _run(host, outputs, python_bomb, "done", hook=False, monkeypatch=monkeypatch, time_limit_s=2)
    assert result.reason in ("runtime_error", "timeout"), result
    assert sandbox.run_program("print(2)", "", "2").passed, "the evaluator still works"


def test_deep_tree_and_removed_permissions_do_not_break_cleanup(host, outputs, tmp_path, monkeypatch):
    program = '''
import os
top = os.getcwd()
for _ in range(5000):
    os.mkdir("d")
    os.chdir("d")
open("leaf", "w").write("x")
os.chmod("leaf", 0)
os.chdir(top)
os.chmod("d", 0)
os.chmod(top, 0)
print("done")
'''
    # (The audit hook resolves every path it checks: quadratic in depth, so it is off here.)
    result, _, _ = _run(host, outputs, program, "done", hook=False, monkeypatch=monkeypatch, time_limit_s=20)
    assert result.passed, result
    # Without the jail (the opt-in fallback), the host folder must be removed all the same. On a
    # tmpfs when there is one: on this disk, rmdir alone takes ~4 ms per folder.
    shm = pathlib.Path("/dev/shm")
    scratch = pathlib.Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv(sandbox.UNSAFE_NO_JAIL_ENV, "1")
    monkeypatch.setattr(sandbox, "_AUDIT_HOOK", False)
    depth = 5000 if scratch.parent == shm else 1500  # both beyond shutil.rmtree's recursion
    fallback = f'''
import os
top = os.getcwd()
for _ in range({depth}):
    os.mkdir("d")
    os.chdir("d")
open("leaf", "w").write("x")
os.chdir(top)
os.chmod("d", 0)
print("done")
'''
    try:
        result = sandbox.run_program(fallback, "", "done", time_limit_s=30)
        assert result.passed, result
        assert list(scratch.iterdir()) == [], "the fallback left its folder behind"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_memory_error_text_on_stderr_is_not_a_memory_failure(host, outputs):
    program = 'import sys\nprint(42)\nsys.stderr.write("Traceback...\\nMemoryError: just text\\n")\n'
    result, _, _ = _run(host, outputs, program, "42")
    assert result.passed, result
    bomb = "x = []\nwhile True:\n    x.append(bytearray(64 * 2**20))\n"
    result, _, _ = _run(host, outputs, bomb, "42", memory_limit_mb=256)
    assert result.reason == "memory_limit", result


def test_numpy_scipy_sympy_program_passes(host, outputs):
    program = textwrap.dedent('''
        import numpy as np, scipy.linalg, sympy
        n = int(input())
        a = np.arange(1, n * n + 1, dtype=float).reshape(n, n) + np.eye(n)
        print(round(float(np.linalg.det(a)), 6), round(float(scipy.linalg.det(a)), 6), sympy.factorint(360))
    ''')
    expected = subprocess.run([sys.executable, "-c", program], input="3\n", capture_output=True, text=True, timeout=120).stdout
    assert expected.strip(), "control: the program runs outside the jail"
    result = sandbox.run_program(program, "3\n", expected, time_limit_s=60)
    assert result.passed, result


def test_unavailable_namespaces_give_one_line_and_the_fallback_is_opt_in(jail_available):
    """In a user namespace that may not create more, the jail cannot be built: one-line UserError;
    with the opt-in variable the program runs without the jail, after a warning."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("util-linux unshare is not installed")
    script = textwrap.dedent('''
        import os, sys
        from emergence_jax.evaluate import sandbox
        try:
            sandbox.run_program("print(1)", "", "1")
            print("NO ERROR")
        except sandbox.UserError as error:
            print("USERERROR", str(error).count("\\n"), error)
        os.environ[sandbox.UNSAFE_NO_JAIL_ENV] = "1"
        print("FALLBACK", sandbox.run_program("print(1)", "", "1").reason)
    ''')
    command = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {sys.executable} -c {shlex_quote(script)}"
    completed = subprocess.run([unshare, "--user", "--map-root-user", "sh", "-c", command], capture_output=True, text=True,
                               timeout=60, cwd=pathlib.Path(__file__).resolve().parents[1])
    if completed.returncode != 0 and "max_user_namespaces" in completed.stderr:
        pytest.skip(f"cannot forbid nested user namespaces here: {completed.stderr.strip()}")
    assert "USERERROR 0 sandbox:" in completed.stdout, (completed.stdout, completed.stderr)
    assert sandbox.UNSAFE_NO_JAIL_ENV in completed.stdout
    assert "FALLBACK passed" in completed.stdout
    assert f"warning: {sandbox.UNSAFE_NO_JAIL_ENV}=1" in completed.stderr


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_process_limit_is_per_jail_and_jails_run_side_by_side(host, outputs, monkeypatch):
    """Every jail's program is host uid 65534, yet the process limit counts per jail: four jails
    at once each reach exactly their own limit (the program's main thread plus limit - 1 more).
    (Address space is raised here: each thread reserves a stack and a malloc arena.)"""
    from concurrent.futures import ThreadPoolExecutor

    program = textwrap.dedent('''
        import threading, time
        stop = threading.Event()
        started = 0
        try:
            while started < 100:
                threading.Thread(target=stop.wait, daemon=True).start()
                started += 1
        except RuntimeError:
            pass
        print(started)
        stop.set()
    ''')
    monkeypatch.setattr(sandbox, "_AUDIT_HOOK", False)
    limits = [16, 12, 16, 8]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: sandbox.run_program(program, "", str(n - 1), time_limit_s=20, max_processes=n,
                                                              memory_limit_mb=8192), limits))
    assert [r.reason for r in results] == ["passed"] * 4, results
