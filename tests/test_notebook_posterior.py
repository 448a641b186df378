"""notebooks/emergence_posterior.ipynb runs top to bottom headless on the bundled simulated sweep
and recovers its known few-shot emergence loss (2.30 nats)."""

import os
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a NUTS fit in a notebook kernel; `make test-slow`

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "emergence_posterior.ipynb"
TRUE_FEWSHOT_EMERGENCE_LOSS = 2.30  # emergence_jax/examples/simulated_truth.json


def _text(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output.get("output_type") == "stream")


def test_notebook_runs_headless_and_recovers_the_simulated_emergence_point(tmp_path, monkeypatch):
    monkeypatch.setenv("EMERGENCE_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    text = "\n".join(_text(cell) for cell in notebook.cells if cell.cell_type == "code")
    median, low, high = map(float, re.search(r"E\(D0\): median ([\d.]+), 90% interval \[([\d.]+), ([\d.]+)\]", text).groups())
    assert low <= median <= high and abs(median - TRUE_FEWSHOT_EMERGENCE_LOSS) < 0.1
    probability = float(re.search(r"at 2.25 nats/token has emerged few-shot with probability ([\d.]+)", text).group(1))
    assert 0.0 <= probability <= 1.0
    assert re.search(r"error [\d.]+ nats -> (success|miss)", text)
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # trace, pair, fit and CDF plots
