"""launch/*.sh --dry-run: the exact command lines for one TPU host, a 4-worker TPU pod and one GPU
machine; bad options (a config that is not in the checkout included) are refused before anything
runs; every config the code, scripts and tests name exists; the scripts pass shellcheck."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"


def dry_run(script: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(LAUNCH / script), *args, "--dry-run"], cwd=ROOT, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )


def archive_line(tmp_path: Path, name: str) -> str:
    return f"+ (cd {ROOT} && git ls-files -z --cached --others --exclude-standard | tar --null -T - -czf {tmp_path}/emergence_jax-src-{name}.tar.gz)"


def install_line(prefix: str, jax_extra: str) -> str:
    return (
        f"{prefix} '--command=mkdir -p emergence_jax && tar -xzf emergence_jax-src.tar.gz -C emergence_jax && python3 -m venv venv"
        f" && venv/bin/pip install -q -U pip && venv/bin/pip install -q -e '\\''./emergence_jax[gcs]'\\'' '\\''jax[{jax_extra}]'\\'''"
    )


def sweep_line(prefix: str, arguments: str) -> str:
    return f"{prefix} '--command=cd emergence_jax && ../venv/bin/emergence-jax sweep {arguments} 2>&1 | tee -a ../sweep.log; exit ${{PIPESTATUS[0]}}'"


def test_tpu_single_host(tmp_path):
    result = dry_run("tpu_vm.sh", "--name", "one", "--zone", "us-central2-b", "--config", "configs/paper/pythia_csqa.yaml", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    ssh = "+ gcloud compute tpus tpu-vm ssh one --zone=us-central2-b --worker=all"
    assert result.stdout.splitlines() == [
        "+ gcloud compute tpus tpu-vm create one --zone=us-central2-b --accelerator-type=v4-8 --version=tpu-ubuntu2204-base",
        archive_line(tmp_path, "one"),
        f"+ gcloud compute tpus tpu-vm scp {tmp_path}/emergence_jax-src-one.tar.gz one:emergence_jax-src.tar.gz --zone=us-central2-b --worker=all",
        install_line(ssh, "tpu"),
        sweep_line(ssh, "--config configs/paper/pythia_csqa.yaml --set output_dir=runs/one"),
        "+ mkdir -p results/one",
        "+ gcloud compute tpus tpu-vm scp --recurse 'one:emergence_jax/runs/one/*' results/one --zone=us-central2-b --worker=0",
        "+ gcloud compute tpus tpu-vm delete one --zone=us-central2-b --quiet",
    ]


def test_tpu_pod_with_four_workers(tmp_path):
    result = dry_run(
        "tpu_vm.sh", "--name", "pod", "--zone", "us-central2-b", "--accelerator-type", "v4-32", "--spot", "--project", "lab",
        "--config", "configs/paper/open_llama_v1_mmlu.yaml", "--output", "gs://bucket/mmlu", "--models-from", "gs://bucket/ckpts",
        "--set", "evaluate.batch_size=8", "--keep", tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    flags = "--zone=us-central2-b --project=lab"
    ssh = f"+ gcloud compute tpus tpu-vm ssh pod {flags} --worker=all"
    assert result.stdout.splitlines() == [
        f"+ gcloud compute tpus tpu-vm create pod {flags} --accelerator-type=v4-32 --version=tpu-ubuntu2204-base --spot",
        archive_line(tmp_path, "pod"),
        f"+ gcloud compute tpus tpu-vm scp {tmp_path}/emergence_jax-src-pod.tar.gz pod:emergence_jax-src.tar.gz {flags} --worker=all",
        install_line(ssh, "tpu"),
        f"{ssh} '--command=mkdir -p emergence_jax/checkpoints && gcloud storage rsync --recursive gs://bucket/ckpts emergence_jax/checkpoints'",
        sweep_line(ssh, "--config configs/paper/open_llama_v1_mmlu.yaml --set output_dir=gs://bucket/mmlu --set distributed=true --set evaluate.batch_size=8"),
        "+ mkdir -p results/pod",
        "+ gcloud storage rsync --recursive gs://bucket/mmlu results/pod",
    ]


def test_gpu_machine(tmp_path):
    result = dry_run(
        "gpu_vm.sh", "--name", "gpu", "--zone", "us-central1-a", "--config", "configs/paper/llama2_apps.yaml",
        "--output", "gs://bucket/apps", "--data-from", "gs://bucket/tfds", tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    ssh = "+ gcloud compute ssh gpu --zone=us-central1-a"
    assert result.stdout.splitlines() == [
        "+ gcloud compute instances create gpu --zone=us-central1-a --machine-type=a2-ultragpu-1g --image-family=common-cu124-ubuntu-2204"
        " --image-project=deeplearning-platform-release --boot-disk-size=500GB --maintenance-policy=TERMINATE --metadata=install-nvidia-driver=True",
        archive_line(tmp_path, "gpu"),
        f"+ gcloud compute scp {tmp_path}/emergence_jax-src-gpu.tar.gz gpu:emergence_jax-src.tar.gz --zone=us-central1-a",
        install_line(ssh, "cuda12"),
        f"{ssh} '--command=mkdir -p emergence_jax/data/tfds && gcloud storage rsync --recursive gs://bucket/tfds emergence_jax/data/tfds'",
        sweep_line(ssh, "--config configs/paper/llama2_apps.yaml --set output_dir=gs://bucket/apps"),
        "+ mkdir -p results/gpu",
        "+ gcloud storage rsync --recursive gs://bucket/apps results/gpu",
        "+ gcloud compute instances delete gpu --zone=us-central1-a --quiet",
    ]


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("tpu_vm.sh", ["--name", "p", "--zone", "z", "--config", "c.yaml", "--accelerator-type", "v4-32"], "give a gs:// --output"),
        ("tpu_vm.sh", ["--name", "p", "--zone", "z", "--config", "c.yaml", "--accelerator-type", "v9-8"], "unknown TPU family"),
        ("tpu_vm.sh", ["--name", "p", "--zone", "z", "--config", "c.yaml", "--bogus", "1"], "unknown option --bogus"),
        ("gpu_vm.sh", ["--config", "c.yaml"], "give --name and --zone"),
        ("gpu_vm.sh", ["--name", "g", "--zone"], "--zone needs a value"),
        ("tpu_vm.sh", ["--name", "p", "--zone", "z", "--config", "configs/paper/no_such.yaml"], "--config configs/paper/no_such.yaml: no such file"),
        ("gpu_vm.sh", ["--name", "g", "--zone", "z", "--config", "configs/no_such.yaml"], "--config configs/no_such.yaml: no such file"),
        ("gpu_vm.sh", ["--name", "g", "--zone", "z", "--config", str(ROOT / "configs" / "sweep_tiny.yaml")], "give the path inside this checkout"),
    ],
)
def test_bad_options_are_refused_before_any_command(script, args, message, tmp_path):
    result = dry_run(script, *args, tmp_path=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "+ " not in result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_scripts_pass_shellcheck():
    scripts = sorted(str(path) for path in LAUNCH.glob("*.sh"))
    result = subprocess.run(["shellcheck", "-x", *scripts], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_every_config_named_in_code_scripts_and_tests_exists():
    named = set()
    for folder in ("emergence_jax", "launch", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".sh", ".yaml", ".md"} and path.is_file():
                named |= set(re.findall(r"\bconfigs/[\w/.-]*?\w\.yaml\b", path.read_text(errors="ignore")))
    named = {name for name in named if "*" not in name and "no_such" not in name}
    assert "configs/paper/open_llama_v1_mmlu.yaml" in named and "configs/sweep_tiny.yaml" in named
    assert sorted(name for name in named if not (ROOT / name).is_file()) == []
