"""Writing a command's output files all-or-nothing: everything goes to a temporary folder beside
the destination and is moved into place only once every file is complete."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def staged_output_dir(out_dir: str | os.PathLike):
    """Yield a temporary folder; on success move its files into `out_dir`, on failure delete it."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield staging
        out_dir.mkdir(exist_ok=True)
        for item in staging.iterdir():
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_json(path: Path, payload: dict) -> None:
    """Strict JSON (readable by any parser): NaN and ±inf, e.g. an infinite Pareto k, become null."""
    path.write_text(json.dumps(_finite(payload), indent=2, default=_json_default, allow_nan=False) + "\n")


def _finite(value):
    import math

    import numpy as np

    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
