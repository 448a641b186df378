#!/usr/bin/env bash
# Run an emergence-jax sweep on one GPU machine, from creation to deletion:
#   create a Compute Engine GPU VM (or use an existing machine with --host) -> copy this checkout and
#   install it with jax[cuda12] -> optionally fetch checkpoints and data from a bucket -> run the sweep
#   (logs stream here) -> copy the results back -> delete the VM (also when the sweep fails; --keep to keep it).
# Rerunning resumes: the sweep skips done jobs and resumes an interrupted finetuning run.
#
# Example:
#   launch/gpu_vm.sh --name emergence-apps --zone us-central1-a --machine-type a2-ultragpu-1g \
#     --config configs/paper/llama2_apps.yaml --output gs://my-bucket/sweeps/apps --dry-run
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'USAGE'
usage: launch/gpu_vm.sh (--name NAME --zone ZONE | --host USER@HOST) --config CONFIG [options]
  --name NAME              VM name (Compute Engine)
  --zone ZONE              e.g. us-central1-a
  --host USER@HOST         use this existing machine over plain ssh instead (nothing is created or deleted)
  --config FILE            sweep config inside this checkout
  --machine-type TYPE      default a2-ultragpu-1g (1x A100 80GB)
  --image-family FAMILY    default common-cu124-ubuntu-2204 (Deep Learning VM, CUDA 12.4)
  --image-project PROJECT  default deeplearning-platform-release
  --disk-size SIZE         boot disk, default 500GB (checkpoints, finetuning state)
  --project PROJECT        Google Cloud project (default: gcloud's)
  --spot                   spot capacity
  --output DIR             sweep output_dir: gs://... or a folder on the machine (default runs/NAME)
  --results DIR            local folder the results are copied to (default results/NAME)
  --models-from GS_URL     copy checkpoints from this bucket folder into the checkout's checkpoints/ first
  --data-from GS_URL       copy prepared TFDS data from this bucket folder into data/tfds
  --set KEY=VALUE          passed to `emergence-jax sweep --set` (repeatable)
  --keep                   do not delete the VM at the end
  --dry-run                print every command instead of running it
USAGE
}

NAME="" ZONE="" HOST="" CONFIG="" MACHINE="a2-ultragpu-1g" IMAGE_FAMILY="common-cu124-ubuntu-2204"
IMAGE_PROJECT="deeplearning-platform-release" DISK="500GB" PROJECT="" SPOT=0 OUTPUT="" RESULTS=""
MODELS_FROM="" DATA_FROM="" KEEP=0
SWEEP_SETS=()
while (($#)); do
  case $1 in
    --spot) SPOT=1; shift; continue ;;
    --keep) KEEP=1; shift; continue ;;
    --dry-run) DRY_RUN=1; shift; continue ;;
    -h | --help) usage; exit 0 ;;
  esac
  [[ $# -ge 2 && $2 != --* ]] || die "$1 needs a value (see --help)"
  case $1 in
    --name) NAME=$2 ;;
    --zone) ZONE=$2 ;;
    --host) HOST=$2 ;;
    --config) CONFIG=$2 ;;
    --machine-type) MACHINE=$2 ;;
    --image-family) IMAGE_FAMILY=$2 ;;
    --image-project) IMAGE_PROJECT=$2 ;;
    --disk-size) DISK=$2 ;;
    --project) PROJECT=$2 ;;
    --output) OUTPUT=$2 ;;
    --results) RESULTS=$2 ;;
    --models-from) MODELS_FROM=$2 ;;
    --data-from) DATA_FROM=$2 ;;
    --set) SWEEP_SETS+=(--set "$2") ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift 2
done
[[ -n ${CONFIG} ]] || die "--config is required (see --help)"
if [[ -n ${HOST} ]]; then
  NAME=${NAME:-${HOST#*@}}
  KEEP=1
else
  [[ -n ${NAME} && -n ${ZONE} ]] || die "give --name and --zone (a new VM) or --host (an existing machine)"
fi
check_config "${CONFIG}"
OUTPUT=${OUTPUT:-runs/${NAME}}
RESULTS=${RESULTS:-results/${NAME}}
ARCHIVE="${TMPDIR:-/tmp}/emergence_jax-src-${NAME}.tar.gz"
FLAGS=(--zone="${ZONE}")
[[ -n ${PROJECT} ]] && FLAGS+=(--project="${PROJECT}")

# remote COMMAND: run a shell command on the machine.
remote() {
  if [[ -n ${HOST} ]]; then
    run ssh "${HOST}" "$1"
  else
    run gcloud compute ssh "${NAME}" "${FLAGS[@]}" --command="$1"
  fi
}

# copy_to LOCAL REMOTE / copy_from REMOTE LOCAL (REMOTE relative to the home folder).
copy_to() {
  if [[ -n ${HOST} ]]; then run scp "$1" "${HOST}:$2"; else run gcloud compute scp "$1" "${NAME}:$2" "${FLAGS[@]}"; fi
}
copy_from() {
  if [[ -n ${HOST} ]]; then run scp -r "${HOST}:$1" "$2"; else run gcloud compute scp --recurse "${NAME}:$1" "$2" "${FLAGS[@]}"; fi
}

finish() {
  local status=$?
  run mkdir -p "${RESULTS}"
  if [[ ${OUTPUT} == gs://* ]]; then
    run gcloud storage rsync --recursive "${OUTPUT}" "${RESULTS}" || echo "warning: copying results failed" >&2
  else
    copy_from "emergence_jax/${OUTPUT}/*" "${RESULTS}" || echo "warning: copying results failed" >&2
  fi
  if [[ ${KEEP} -eq 0 ]]; then
    run gcloud compute instances delete "${NAME}" "${FLAGS[@]}" --quiet || echo "warning: deleting ${NAME} failed" >&2
  fi
  exit "${status}"
}

if [[ -z ${HOST} ]]; then
  CREATE=(gcloud compute instances create "${NAME}" "${FLAGS[@]}" --machine-type="${MACHINE}"
    --image-family="${IMAGE_FAMILY}" --image-project="${IMAGE_PROJECT}" --boot-disk-size="${DISK}"
    --maintenance-policy=TERMINATE --metadata=install-nvidia-driver=True)
  [[ ${SPOT} -eq 1 ]] && CREATE+=(--provisioning-model=SPOT --instance-termination-action=STOP)
  run "${CREATE[@]}"
fi
trap finish EXIT
make_archive "${ARCHIVE}"
copy_to "${ARCHIVE}" emergence_jax-src.tar.gz
remote "$(install_command cuda12)"
[[ -n ${MODELS_FROM} ]] && remote "$(fetch_command "${MODELS_FROM}" emergence_jax/checkpoints)"
[[ -n ${DATA_FROM} ]] && remote "$(fetch_command "${DATA_FROM}" emergence_jax/data/tfds)"
remote "$(sweep_command --config "${CONFIG}" --set "output_dir=${OUTPUT}" "${SWEEP_SETS[@]}")"
