"""Training metrics to `run_dir/metrics.jsonl` (one JSON object per logged step) and TensorBoard."""

from __future__ import annotations

from pathlib import Path

from emergence_jax.io import to_json_text


class MetricsLog:
    """Appends `{"step": n, **metrics}` lines and TensorBoard scalars under `run_dir/tensorboard`."""

    def __init__(self, run_dir: str | Path, *, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self._writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._jsonl.write(to_json_text({"step": step, **metrics}, indent=None) + "\n")  # NaN -> null (io's rule)
        self._jsonl.flush()
        for name, value in metrics.items():
            self._writer.add_scalar(f"train/{name}", value, step)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._writer.close()
