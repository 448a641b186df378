"""The one module that writes files: atomic replacement, strict JSON, bounded reads and locked appends.

Rules (every writer in the package goes through these):

- **Atomic write** (`atomic_write_bytes`, `atomic_write_text`, `atomic_path`, `write_json`): the data
  goes to a temporary file in the destination's folder, named ``.<name>.tmp-<host>-<pid>-<random><suffix>``,
  which is fsynced and renamed over the destination with `os.replace`. Readers see the old file or the
  new one, never half of one. The temporary file is removed on any exception; one left by a process
  killed with SIGKILL is removed by the next write to the same destination from the same host (its
  pid is gone). A destination that is a symlink is written through: its target is replaced, the
  link stays. An existing destination keeps its permission bits (and owner, where allowed); a new one
  gets ``0o666 & ~umask`` like any file made by `open`.
- **Strict JSON out** (`to_json_text`, `write_json`): the output is RFC 8259 JSON that any parser
  reads. The one rule for non-finite numbers: NaN and ±inf (Python or NumPy floats) are written as
  ``null`` (e.g. an infinite Pareto k in a fit summary). Code for which a non-finite value is a
  failure (a NaN pretraining loss, a results row) checks it where it is computed and raises.
  NumPy scalars and arrays become numbers and lists; anything else non-serialisable is a TypeError.
- **Strict JSON in** (`loads_json`, `read_json`): ``NaN``/``Infinity`` literals, numbers that overflow
  a float (``1e400``), duplicate keys in one object and nesting deeper than `MAX_JSON_DEPTH` are a
  `UserError` naming the file, as is anything that is not valid UTF-8 JSON.
- **Bounded reads** (`read_bytes`, `read_text`): only regular files are opened (a folder, FIFO,
  socket or device such as ``/dev/zero`` is refused after a `stat`, before any `open`, and the open
  uses ``O_NONBLOCK`` so a file swapped for a FIFO in between cannot hang the reader); at most
  `max_bytes` are read. Text must be UTF-8 (a UTF-8 byte-order mark is dropped); UTF-16 and other
  encodings are refused with the encoding named.
- **Locked appends** (`locked_file`, `append_lines`): the file is opened ``O_APPEND`` and held under
  an exclusive `fcntl.flock` while only the new lines are written, in one `os.write` of complete
  lines. The file is never replaced, so its mode, owner and symlink stay. If the inode under the
  path changes while waiting (a concurrent atomic rewrite), the lock is retaken on the new file. A
  last line without a newline is checked under the lock: a complete line (hand-edited file missing
  its final newline) gets the newline, a partial one (a writer killed mid-write) is cut off with a
  warning. Appends never make temporary files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
import socket
import stat
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from emergence_jax.errors import UserError

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects accepted by `loads_json` (results, configs, HF config.json)."""

DEFAULT_MAX_BYTES = 1 << 30
"""Largest file `read_bytes` reads unless told otherwise: 1 GiB."""

_TMP_MARK = ".tmp-"


# ---------------------------------------------------------------------------------------------------
# Atomic writes


def _real(path: str | os.PathLike) -> Path:
    """The path to write: a symlink's final target (so the link survives), else the path itself."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}{_TMP_MARK}"


def _remove_stale_temps(path: Path) -> None:
    """Delete temporary files for `path` left by killed processes of this host."""
    host = socket.gethostname().replace("-", "_")
    prefix = _tmp_prefix(path)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if path.suffix and rest.endswith(path.suffix):
            rest = rest[: -len(path.suffix)]
        parts = rest.split("-")
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(path.parent / name)
        except OSError:
            pass


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that needs a file name (``savefig``,
    ``np.savez``); when the block ends without error the file is fsynced and renamed over `path`."""
    dest = _real(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(dest)
    host = socket.gethostname().replace("-", "_")
    # The destination's suffix last, so writers that add a missing suffix (np.savez) keep the name.
    tmp = dest.parent / f"{_tmp_prefix(dest)}{host}-{os.getpid()}-{secrets.token_hex(4)}{dest.suffix}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        os.close(fd)
        yield tmp
        try:
            old = os.stat(dest)
        except FileNotFoundError:
            old = None
        fd = os.open(tmp, os.O_RDONLY)
        try:
            if old is not None:
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, old.st_uid, old.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(dest.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` by `data` atomically (see the module rules)."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Replace `path` by `text` atomically (see the module rules)."""
    atomic_write_bytes(path, text.encode(encoding))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# ---------------------------------------------------------------------------------------------------
# Strict JSON


def _jsonable(value: Any) -> Any:
    """`value` with NumPy types made plain, tuples made lists and non-finite floats made None."""
    if isinstance(value, dict):
        return {key if isinstance(key, str) else _json_key(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy.") or module.startswith("jax"):
        import numpy as np

        array = np.asarray(value)
        if array.ndim == 0:
            return _jsonable(array.item())
        return _jsonable(array.tolist())
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json_key(key: Any) -> str:
    if isinstance(key, (bool, int, float)) or key is None:
        return json.dumps(key)
    if hasattr(key, "item"):
        return str(key.item())
    raise TypeError(f"JSON object keys must be strings, got {type(key).__name__}")


def to_json_text(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text for `obj` (non-finite floats become null; see the module rules), no newline."""
    return json.dumps(_jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Write `obj` as strict JSON plus a newline to `path`, atomically."""
    atomic_write_text(path, to_json_text(obj, indent=indent, sort_keys=sort_keys) + "\n")


class _JSONProblem(ValueError):
    pass


def _no_constant(name: str):
    raise _JSONProblem(f"'{name}' is not a JSON number; write null or a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JSONProblem(f"number {text[:40]!r} is too large for a float")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _JSONProblem(f"key {key[:80]!r} appears twice in one object")
        result[key] = value
    return result


def _depth_ok(text: str, max_depth: int) -> tuple[bool, int]:
    """Whether brackets outside strings nest at most `max_depth` deep; and the line of the first
    bracket too deep. A linear scan, so deep input cannot exhaust the parser's recursion."""
    if text.count("[") + text.count("{") <= max_depth:
        return True, 0
    depth = 0
    in_string = escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return False, text.count("\n", 0, index) + 1
        elif char in "]}":
            depth -= 1
    return True, 0


def loads_json(text: str, *, source: str, max_depth: int = MAX_JSON_DEPTH, line: int | None = None) -> Any:
    """Parse strict JSON (see the module rules); any problem is a `UserError` naming `source` (and,
    when `text` is line `line` of a JSON-lines file, that line)."""
    at = f"{source}: line {line}" if line is not None else source
    ok, deep_line = _depth_ok(text, max_depth)
    if not ok:
        at_deep = at if line is not None else f"{source}: line {deep_line}"
        raise UserError(f"{at_deep}: JSON nested deeper than {max_depth} levels; flatten it")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        at_err = at if line is not None else f"{source}: line {err.lineno}"
        raise UserError(f"{at_err}: not valid JSON ({err.msg}, column {err.colno})") from None
    except _JSONProblem as err:
        raise UserError(f"{at}: not strict JSON: {err}") from None
    except (ValueError, RecursionError):  # an integer with more than 4300 digits
        raise UserError(f"{at}: not valid JSON (a number with thousands of digits); write a finite number") from None


def read_json(path: str | os.PathLike, *, max_bytes: int = 64 << 20, what: str = "JSON file") -> Any:
    """Read and strictly parse a UTF-8 JSON file of at most `max_bytes` (default 64 MiB)."""
    return loads_json(read_text(path, max_bytes=max_bytes, what=what), source=str(path))


# ---------------------------------------------------------------------------------------------------
# Bounded reads


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bytes(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "file") -> bytes:
    """The bytes of the regular file `path`; a `UserError` if it is missing, unreadable, not a
    regular file, or larger than `max_bytes`."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found; check the path") from None
    except OSError as err:
        raise UserError(f"{path}: cannot access the {what} ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: is {_kind(info.st_mode)}, not a {what}; pass a regular file")
    if info.st_size > max_bytes:
        raise UserError(f"{path}: {info.st_size} bytes is larger than the {max_bytes}-byte limit for a {what}; split it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except PermissionError:
        raise UserError(f"{path}: cannot read the {what} (permission denied); fix its permissions") from None
    except OSError as err:
        raise UserError(f"{path}: cannot open the {what} ({err.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{path}: is {_kind(os.fstat(fd).st_mode)}, not a {what}; pass a regular file")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UserError(f"{path}: larger than the {max_bytes}-byte limit for a {what}; split it")
    except OSError as err:
        raise UserError(f"{path}: cannot read the {what} ({err.strerror})") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def decode_utf8(data: bytes, *, source: str) -> str:
    """`data` as UTF-8 text (a UTF-8 byte-order mark dropped); other encodings are a `UserError`."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError(f"{source}: is UTF-16 encoded; save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        byte = data[err.start]
        hint = " (it looks like Latin-1/Windows-1252)" if byte >= 0x80 else ""
        raise UserError(f"{source}: line {line}: byte 0x{byte:02x} is not UTF-8{hint}; save the file as UTF-8") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise UserError(f"{source}: line {line}: contains a NUL byte (binary or UTF-16 data?); save the file as UTF-8 text")
    return text


def read_text(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "file") -> str:
    """`read_bytes` then `decode_utf8`."""
    return decode_utf8(read_bytes(path, max_bytes=max_bytes, what=what), source=str(path))


def read_csv_table(path: str | os.PathLike, *, required: tuple[str, ...], what: str, fix: str) -> list[tuple[int, dict]]:
    """A small CSV table (a candidates list, a loss table) read through `read_text` (regular file,
    bounded, UTF-8): [(physical line, row dict)], after checking every `required` column is in the
    header (`fix` says what the table needs)."""
    import csv
    import io as _stringio

    text = read_text(path, what=what)
    reader = csv.DictReader(_stringio.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for column in required:
        if column not in header:
            raise UserError(f"{path}: missing column '{column}'; {fix}")
    return [(reader.line_num, row) for row in reader]


# ---------------------------------------------------------------------------------------------------
# Locked appends


class LockedFile:
    """A file held under an exclusive `flock`, opened for appending; see `locked_file`."""

    def __init__(self, fd: int, path: Path):
        self.fd = fd
        self.path = path

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self) -> bytes:
        """The whole current contents."""
        size = self.size
        chunks = []
        offset = 0
        while offset < size:
            chunk = os.pread(self.fd, min(1 << 24, size - offset), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def tail(self, n: int) -> bytes:
        size = self.size
        return os.pread(self.fd, min(n, size), max(0, size - n))

    def append(self, data: bytes) -> None:
        """Write `data` at the end of the file, in one `os.write` where the kernel allows."""
        _write_all(self.fd, data)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def last_line_start(self) -> int:
        """Offset just after the last newline (0 when there is none)."""
        size = self.size
        end = size
        while end > 0:
            start = max(0, end - 65536)
            block = os.pread(self.fd, end - start, start)
            index = block.rfind(b"\n")
            if index >= 0:
                return start + index + 1
            end = start
        return 0


@contextlib.contextmanager
def locked_file(path: str | os.PathLike, *, create: bool = True) -> Iterator[LockedFile]:
    """Open `path` for appending (creating it if `create`) under an exclusive `flock`.

    A symlink is followed (the link is kept), the file's mode is untouched. If another process
    replaced the file while this one waited for the lock, the lock is retaken on the new file.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise UserError(f"{path}: cannot access ({err.strerror})") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: is {_kind(info.st_mode)}, not a regular file; pass a file path")
    if info is None:
        if not create:
            raise UserError(f"{path}: not found; check the path")
        _real(path).parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_APPEND | os.O_NONBLOCK | (os.O_CREAT if create else 0)
    while True:
        try:
            fd = os.open(path, flags, 0o666)
        except PermissionError:
            raise UserError(f"{path}: cannot write (permission denied); fix its permissions") from None
        except OSError as err:
            raise UserError(f"{path}: cannot open for appending ({err.strerror})") from None
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise UserError(f"{path}: is {_kind(opened.st_mode)}, not a regular file; pass a file path")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is None or (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
                os.close(fd)
                continue  # replaced or removed while we waited: lock the file now at `path`
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        break
    try:
        yield LockedFile(fd, _real(path))
    finally:
        os.close(fd)  # releases the lock


def repair_last_line(handle: LockedFile, *, is_complete: Callable[[bytes], bool], source: str) -> None:
    """Under the lock: if the file does not end with a newline, either add it (the last line is a
    complete one, by `is_complete`) or cut the partial line a killed writer left, with a warning."""
    size = handle.size
    if size == 0 or handle.tail(1) == b"\n":
        return
    start = handle.last_line_start()
    last = os.pread(handle.fd, size - start, start)
    if is_complete(last):
        handle.append(b"\n")
        return
    handle.truncate(start)
    warnings.warn(
        f"{source}: removed an incomplete last line ({size - start} bytes, no newline) left by an interrupted append",
        stacklevel=3,
    )


def append_lines(
    path: str | os.PathLike,
    lines: Sequence[str],
    *,
    is_complete: Callable[[bytes], bool],
    header: str | None = None,
) -> int:
    """Append `lines` (without newlines) to `path` under the lock, in one write; returns the count.

    `is_complete(last_line)` tells a complete last line missing its newline from a partial one (see
    `repair_last_line`). With `header`, an empty file gets it first and a non-empty one must start
    with it exactly (after an optional UTF-8 byte-order mark).
    """
    path = Path(path)
    with locked_file(path) as handle:
        repair_last_line(handle, is_complete=is_complete, source=str(path))
        prefix = ""
        if header is not None:
            if handle.size == 0:
                prefix = header + "\n"
            else:
                first = os.pread(handle.fd, len(header.encode()) + 8, 0).decode("utf-8", "replace")
                first = first.lstrip("\ufeff").replace("\r\n", "\n")
                if not first.startswith(header + "\n"):
                    raise UserError(f"{path}: line 1: the header is not {header!r}; append to a file with the same columns")
        if not lines and not prefix:
            return 0
        handle.append((prefix + "".join(line + "\n" for line in lines)).encode("utf-8"))
    return len(lines)
