"""The jail's init: run by `sandbox.run_program` as `python -I -S -B jail_init.py CONFIG_FD STATUS_FD`.

A standalone script (it imports nothing from emergence_jax, and of the standard library only
builtin modules, os and ctypes, to start fast): it reads a marshalled config from CONFIG_FD,
builds the jail, runs the program in it, and writes one status line to STATUS_FD. See the threat
model in `sandbox.py`. Processes (jail mode):

- launcher (this process, started as root or as the evaluator's user): forks a mapper, enters new
  user, mount, PID, network, IPC, UTS and cgroup namespaces, opens the folders to show read-only,
  forks the PID-namespace init, times it, and kills it at the wall-clock limit;
- mapper (root only): writes the launcher's uid/gid maps from outside (0 -> 0 for the launcher
  and init, which keep capabilities only inside the jail's namespaces; 65534 -> 65534 for the
  program, whose identity on the host is `nobody`), then exits. Without root, the one mappable
  id is the evaluator's own, shown as 65534 to both init and the program;
- init (PID 1 of the new PID namespace): builds a fresh root (read-only binds, fresh /proc,
  minimal /dev, a size-capped writable tmpfs on /tmp), forbids nested user namespaces, pivots
  into it, forks the program process and reports its wait status. When init exits, the kernel
  kills every process left in the namespace, including ones that called setsid;
- program: drops every capability (bounding set, inheritable, permitted, effective), becomes
  uid/gid 65534 without supplementary groups, sets no_new_privs, resource limits and an empty
  environment, closes every other descriptor, installs the audit hook (second layer) and
  executes the program's code in this interpreter.

Without the jail (`EMERGENCE_JAX_UNSAFE_NO_JAIL`), this process is the program process: limits,
audit hook, then the code, in a host folder the evaluator removes.

Status lines: `exit <wait status>` (init), `timeout` (launcher), `init-died <wait status>`
(launcher: init ended without a status, which only a program sharing its uid, in non-root mode,
can cause), `unavailable <why>` (namespaces refused by the kernel), `setup-error <why>` (any
other failure to build or enter the jail).
"""

import _signal
import ctypes
import marshal
import os
import sys

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_RELATIME, MS_NOATIME, MS_NODIRATIME = 1 << 21, 1024, 2048
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_CORE, RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_AS = 0, 1, 4, 6, 7, 9
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
JAIL_UID = JAIL_GID = 65534
MEMORY_ERROR_EXIT = 86  # the program process's exit code after an uncaught MemoryError
STATUS_FD = -1


class Unavailable(Exception):
    """The kernel refuses the namespaces (not a bug in the jail: the caller reports it to the user)."""


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    for name in ("mount", "umount2", "unshare", "prctl", "syscall", "capset", "getrlimit", "setrlimit"):
        getattr(libc, name).restype = ctypes.c_int
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.syscall.argtypes = [ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p]
    return libc


LIBC = None


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else os.fsencode(s)
    _check(LIBC.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _prctl(option, arg=0, arg3=0):
    _check(LIBC.prctl(option, arg, arg3, 0, 0), f"prctl {option}")


def _status(line):
    os.write(STATUS_FD, (line + "\n").encode("utf-8", "replace"))


def _write_file(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# launcher


def _enter_namespaces():
    """Enter fresh namespaces; as root, have a forked mapper map host uid/gid 65534 into them."""
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    if os.geteuid() != 0:
        outer_uid, outer_gid = os.geteuid(), os.getegid()
        if LIBC.unshare(flags) != 0:
            errno = ctypes.get_errno()
            raise Unavailable(f"unshare (user, mount, pid, net namespaces): {os.strerror(errno)}")
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", f"{JAIL_UID} {outer_uid} 1\n")
        _write_file("/proc/self/gid_map", f"{JAIL_GID} {outer_gid} 1\n")
        return
    # Root: the map 65534 -> 65534 must be written from the parent user namespace.
    # This limit becomes the jail namespace's cap on the evaluator's own process count.
    _, hard = _getrlimit(RLIMIT_NPROC)
    _setrlimit(RLIMIT_NPROC, hard, hard)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    launcher = os.getpid()
    mapper = os.fork()
    if mapper == 0:
        os.close(ready_w)
        os.close(go_r)
        code = 1
        try:
            if os.read(ready_r, 1) == b"u":
                # ns 0 -> host 0 keeps the launcher and init (which stay root, with capabilities
                # only in the jail's namespaces) a different user from the program.
                _write_file(f"/proc/{launcher}/uid_map", f"0 0 1\n{JAIL_UID} {JAIL_UID} 1\n")
                _write_file(f"/proc/{launcher}/gid_map", f"0 0 1\n{JAIL_GID} {JAIL_GID} 1\n")
                os.write(go_w, b"g")
                code = 0
        finally:
            os._exit(code)
    os.close(ready_r)
    os.close(go_w)
    failure = None
    if LIBC.unshare(flags) != 0:
        failure = ctypes.get_errno()
        os.write(ready_w, b"x")
    else:
        os.write(ready_w, b"u")
    mapped = os.read(go_r, 1) == b"g"
    os.waitpid(mapper, 0)
    os.close(ready_w)
    os.close(go_r)
    if failure is not None:
        raise Unavailable(f"unshare (user, mount, pid, net namespaces): {os.strerror(failure)}")
    if not mapped:
        raise OSError("could not write the user namespace's uid/gid maps")


def _launch(config):
    """Build and time the jail (launcher side); never returns."""
    try:
        _enter_namespaces()
        # Open what the jail shows while still able to reach it (the launcher may be root and
        # the interpreter may live under a 0700 home); init binds these through /proc/self/fd.
        binds = [(os.open(path, os.O_PATH | os.O_CLOEXEC), path) for path in config["binds"]]
        alive_r, alive_w = os.pipe()
    except Unavailable as error:
        _status(f"unavailable {error}")
        os._exit(0)
    except Exception as error:  # noqa: BLE001 - reported to the evaluator as a setup error
        _status(f"setup-error {type(error).__name__}: {error}")
        os._exit(0)
    init = os.fork()
    if init == 0:
        os.close(alive_w)
        return _init(config, binds, alive_r)
    os.close(alive_r)
    # Nothing in the jail can see or signal this process, so a timer signal is safe here.
    _signal.signal(_signal.SIGALRM, _alarm)
    _signal.setitimer(_signal.ITIMER_REAL, config["time_limit_s"])
    try:
        _, init_status = os.waitpid(init, 0)
        _signal.setitimer(_signal.ITIMER_REAL, 0)
    except TimeoutError:
        os.kill(init, _signal.SIGKILL)  # init's exit kills everything in its PID namespace
        os.waitpid(init, 0)
        _status("timeout")
        os._exit(0)
    if init_status != 0:  # init does not fail on its own: the program interfered (non-root mode)
        _status(f"init-died {init_status}")
    os._exit(0)


def _alarm(signum, frame):
    raise TimeoutError


# ---------------------------------------------------------------------------------------------
# init (PID 1)


def _statvfs_flags(path):
    """The mount flags that must be kept on a bind remount (the kernel refuses to drop locked ones)."""
    f = os.statvfs(path).f_flag
    keep = 0
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                   (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if f & st:
            keep |= ms
    return keep


def _unescape_octal(text):
    """Undo mountinfo's octal escapes (space, tab, newline, backslash)."""
    for code in ("040", "011", "012", "134"):
        text = text.replace("\\" + code, chr(int(code, 8)))
    return text


def _make_dirs(path):
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o755, exist_ok=True)


def _build_root(config, binds, root):
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    # The one writable place: a size- and inode-capped tmpfs owned by the program's user. Mounted
    # before the binds, so an interpreter or site-packages that lives under /tmp (a checkout or
    # virtual environment there) is bound on top of it, read-only, instead of being hidden by it.
    limits = config["scratch"]
    _make_dirs(root + "/tmp")
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           f"size={limits['tmp_bytes']},nr_inodes={limits['tmp_inodes']},mode=700,uid={JAIL_UID},gid={JAIL_GID}")
    for fd, path in binds:
        target = root + path
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            _make_dirs(target)
        else:
            _make_dirs(os.path.dirname(target))
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        os.close(fd)
    for link, target in config["symlinks"]:
        _make_dirs(os.path.dirname(root + link))
        if not os.path.lexists(root + link):
            os.symlink(target, root + link)
    # Every mount under the new root read-only, nosuid, nodev (submounts of recursive binds too).
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [_unescape_octal(line.split()[4]) for line in f]
    targets = [root + path for _, path in binds]
    for point in points:
        if any(point == t or point.startswith(t + "/") for t in targets):
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | _statvfs_flags(point))
    # /dev: a few harmless devices, and a small private /dev/shm.
    dev = root + "/dev"
    _make_dirs(dev)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=755")
    for name in ("null", "zero", "full", "random", "urandom"):
        os.close(os.open(f"{dev}/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
        _mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
        _mount(None, f"{dev}/{name}", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC | _statvfs_flags(f"{dev}/{name}"))
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm")
    _mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           f"size={limits['shm_bytes']},nr_inodes=256,mode=1777,uid={JAIL_UID},gid={JAIL_GID}")
    _mount(None, dev, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=755")
    # A fresh /proc for the new PID namespace (mounted while the host's is still visible, as the
    # kernel requires); nested user namespaces are forbidden through it, then it is made read-only.
    _make_dirs(root + "/proc")
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _write_file(root + "/proc/sys/user/max_user_namespaces", "0")
    _mount(None, root + "/proc", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    os.chdir(root)
    pivot = SYS_PIVOT_ROOT.get(os.uname().machine)
    if pivot is None:
        raise OSError(f"pivot_root: unsupported machine {os.uname().machine}")
    _check(LIBC.syscall(pivot, b".", b"."), "pivot_root")
    _check(LIBC.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def _init(config, binds, alive_r):
    """PID 1 of the jail: build the root, fork the program, report its wait status."""
    try:
        _prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
        os.set_blocking(alive_r, False)
        try:
            if os.read(alive_r, 1) == b"":
                os._exit(0)  # the launcher died before PDEATHSIG was armed
        except BlockingIOError:
            pass
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _build_root(config, binds, "/tmp")
    except Exception as error:  # noqa: BLE001 - reported to the evaluator as a setup error
        _status(f"setup-error {type(error).__name__}: {error}")
        os._exit(0)
    program = os.fork()
    if program == 0:
        return _enter_program(config)
    _, wait_status = os.waitpid(program, 0)
    _status(f"exit {wait_status}")
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# program process


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities():
    """Become uid/gid 65534 with no supplementary groups, empty every capability set and set
    no_new_privs: nothing the program runs can regain any."""
    cap = 0
    while LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if os.getuid() != JAIL_UID:  # root mode (in non-root mode the one mapped user is already 65534)
        os.setgroups([])
        os.setresgid(JAIL_GID, JAIL_GID, JAIL_GID)
        os.setresuid(JAIL_UID, JAIL_UID, JAIL_UID)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(LIBC.capset(ctypes.byref(header), data), "capset")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(("CapPrm:", "CapEff:", "CapBnd:", "CapInh:", "CapAmb:")) and int(line.split()[1], 16):
                raise OSError(f"capabilities left after dropping them: {line.strip()}")


# Syscalls the program never needs and kernel exploits often use (io_uring, userfaultfd, bpf,
# perf events, keyrings, module loading, mount API, ptrace and cross-process memory access):
# refused with EPERM by a seccomp filter (x86_64 only: the numbers are per architecture). Other
# architectures' calling conventions (i386 `int 0x80`, x32) are refused wholesale.
SECCOMP_DENIED_X86_64 = (
    425, 426, 427,  # io_uring_setup, io_uring_enter, io_uring_register
    323, 321, 298,  # userfaultfd, bpf, perf_event_open
    248, 249, 250,  # add_key, request_key, keyctl
    101, 310, 311, 438,  # ptrace, process_vm_readv, process_vm_writev, pidfd_getfd
    175, 176, 313, 246, 320,  # init_module, delete_module, finit_module, kexec_load, kexec_file_load
    165, 166, 155, 272, 308, 161,  # mount, umount2, pivot_root, unshare, setns, chroot
    428, 429, 430, 431, 432, 433, 442,  # open_tree, move_mount, fsopen, fsconfig, fsmount, fspick, mount_setattr
    304, 163, 167, 168, 169, 179, 103,  # open_by_handle_at, acct, swapon, swapoff, reboot, quotactl, syslog
)
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, EPERM = 0x7FFF0000, 0x00050000, 1
BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x06


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _install_seccomp():
    """Refuse SECCOMP_DENIED_X86_64 (and any non-x86_64 syscall convention) with EPERM; a no-op
    on other machines. Needs no_new_privs, which `_drop_capabilities` sets."""
    if os.uname().machine != "x86_64":
        return False
    deny = SECCOMP_RET_ERRNO | EPERM
    n = len(SECCOMP_DENIED_X86_64)
    program = [(BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
               (BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
               (BPF_RET_K, 0, 0, deny),
               (BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
               (BPF_JGE_K, n + 1, 0, X32_SYSCALL_BIT)]  # x32 numbers: to the final deny
    for i, number in enumerate(SECCOMP_DENIED_X86_64):
        program.append((BPF_JEQ_K, n - i, 0, number))  # to the final deny
    program += [(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), (BPF_RET_K, 0, 0, deny)]
    filters = (_SockFilter * len(program))(*(_SockFilter(*instruction) for instruction in program))
    fprog = _SockFprog(len(program), filters)
    _check(LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0), "seccomp")
    return True


class _Rlimit(ctypes.Structure):
    _fields_ = [("soft", ctypes.c_uint64), ("hard", ctypes.c_uint64)]


def _getrlimit(resource):
    limit = _Rlimit()
    _check(LIBC.getrlimit(resource, ctypes.byref(limit)), f"getrlimit {resource}")
    return limit.soft, limit.hard


def _setrlimit(resource, soft, hard):
    _check(LIBC.setrlimit(resource, ctypes.byref(_Rlimit(soft, hard))), f"setrlimit {resource}")


def _cap(resource, soft, hard=None):
    """Set a limit, never above the one this process already has (which it could not raise)."""
    _, current = _getrlimit(resource)
    hard = min(soft if hard is None else hard, current)
    _setrlimit(resource, min(soft, hard), hard)


def _set_limits(limits):
    _cap(RLIMIT_CPU, limits["cpu_s"], limits["cpu_s"] + 1)
    _cap(RLIMIT_AS, limits["memory_bytes"])
    _cap(RLIMIT_FSIZE, limits["file_bytes"])
    _cap(RLIMIT_NOFILE, limits["open_files"])
    _cap(RLIMIT_CORE, 0)
    if "processes" in limits:
        _cap(RLIMIT_NPROC, limits["processes"])


def _enter_program(config):
    """In the program process: drop privileges and limits, then hand back the code to execute."""
    try:
        if config["jail"]:
            _drop_capabilities()
            _install_seccomp()
            workdir = "/tmp"
        else:
            workdir = config["workdir"]
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/local/bin:/usr/bin:/bin",
                           "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                           "MKL_NUM_THREADS": "1"})
        sys.path[:] = config["sys_path"]
        _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)  # Python ignores it; the file-size cap must kill
        _set_limits(config["limits"])
        import _sitebuiltins
        import builtins

        eof = "Ctrl-D (i.e. EOF)"
        builtins.exit, builtins.quit = _sitebuiltins.Quitter("exit", eof), _sitebuiltins.Quitter("quit", eof)
        builtins.help = _sitebuiltins._Helper()
    except BaseException as error:  # noqa: BLE001 - on the status channel, which the program never holds
        _status(f"setup-error entering the jail: {type(error).__name__}: {error}")
        os._exit(125)
    os.closerange(3, 1 << 20)
    source = config["program"]
    path = os.path.join(workdir, "program.py")  # for the source lines in tracebacks
    try:
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(source)
        code = compile(source, path, "exec")
    except BaseException as error:  # noqa: BLE001 - SyntaxError, or NUL bytes (ValueError): the program's fault
        error.__traceback__ = None
        sys.__excepthook__(type(error), error, None)
        os._exit(1)
    if config["audit"]:
        _install_guard(workdir, config["marker"])
    sys.argv = [path]
    return code


def _install_guard(root, marker):
    """Audit hook (second layer): refuse writes outside `root`, new processes, sockets, native code.
    Everything it uses is bound here, so a program replacing builtins cannot weaken it."""
    import builtins

    real_stderr = os.dup(2)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    path_events = frozenset({
        "os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.symlink", "os.link", "os.chmod",
        "os.chown", "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod",
        "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move",
        "shutil.chown", "os.setxattr", "os.removexattr", "sqlite3.connect",
    })
    refused_events = frozenset({
        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "os.forkpty", "pty.spawn", "os.startfile", "os.kill", "os.killpg",
        "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
        "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
        "ctypes.dlopen", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.chroot",
    })
    realpath, join, getcwd, write, fsdecode = os.path.realpath, os.path.join, os.getcwd, os.write, os.fsdecode
    is_instance, to_str, PathLike, PermError, Exc = isinstance, str, os.PathLike, PermissionError, Exception
    inside_prefix = root + os.sep
    letters = frozenset("wax+")
    # Streams a program may write to by name (competitive-programming code does).
    streams = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/fd/1", "/dev/fd/2",
                         "/proc/self/fd/1", "/proc/self/fd/2"})
    # Where each event's dir_fd arguments are (a dir_fd makes the path relative to a folder the
    # hook cannot see).
    dir_fd_at = {"os.remove": (1,), "os.rmdir": (1,), "os.mkdir": (2,), "os.rename": (2, 3), "os.link": (2, 3),
                 "os.symlink": (2,), "os.chmod": (2,), "os.chown": (3,), "os.utime": (3,), "os.mkfifo": (2,),
                 "os.mknod": (3,), "shutil.rmtree": (1,)}
    no_positions = ()

    def inside(path):
        if is_instance(path, int) or path is None:
            return False
        try:
            if fsdecode(path) in streams:
                return True
            resolved = realpath(join(getcwd(), fsdecode(path)))
        except Exc:
            return False
        return resolved == root or resolved.startswith(inside_prefix)

    def refuse(event, args):
        message = f"{marker} {event} {args!r}"[:500] + "\n"
        write(real_stderr, message.encode("utf-8", "replace"))
        raise PermError(f"sandbox: {event} is not allowed")

    def guard(event, args):
        if event == "open":
            path, mode, flags = args
            if is_instance(path, int) or path is None:
                return
            if mode is not None:
                writes = not letters.isdisjoint(to_str(mode))
            else:
                writes = bool((flags or 0) & write_flags)
            if writes and not inside(path):
                refuse(event, args)
        elif event in path_events:
            paths = [a for a in args if is_instance(a, (str, bytes, PathLike, int))]
            if event in ("os.rename", "os.link", "shutil.copyfile", "shutil.move"):
                paths = paths[:2]
            elif event == "os.symlink":
                paths = paths[1:2]
            else:
                paths = paths[:1]
            for p in paths:
                if p != ":memory:" and not inside(p):
                    refuse(event, args)
            for position in dir_fd_at.get(event, no_positions):
                if position < len(args) and is_instance(args[position], int) and args[position] != -1:
                    refuse(event, args)
        elif event in refused_events:
            refuse(event, args)

    sys.addaudithook(guard)
    del builtins


def _main():
    global LIBC, STATUS_FD
    config_fd, STATUS_FD = int(sys.argv[1]), int(sys.argv[2])
    with open(config_fd, "rb") as f:
        config = marshal.loads(f.read())
    LIBC = _libc()
    if not config["jail"]:
        return _enter_program(config)
    return _launch(config)


_code = _main()
del _main, _launch, _init, _enter_program
try:
    exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
except SystemExit:
    raise
except BaseException as _error:  # noqa: BLE001 - what the interpreter would print, minus this frame
    _error.__traceback__ = _error.__traceback__.tb_next
    sys.__excepthook__(type(_error), _error, _error.__traceback__)
    raise SystemExit(MEMORY_ERROR_EXIT if isinstance(_error, MemoryError) else 1) from None
