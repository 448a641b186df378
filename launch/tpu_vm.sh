#!/usr/bin/env bash
# Run an emergence-jax sweep on a Cloud TPU VM or pod slice, from creation to deletion:
#   create the TPU -> copy this checkout to every worker and install it with jax[tpu]
#   -> optionally fetch checkpoints from a bucket -> run the sweep on all workers (logs stream here;
#   pods run with distributed=true, i.e. jax.distributed.initialize()) -> copy the results back
#   -> delete the TPU (also when the sweep fails; --keep to keep it).
# Rerunning after a preemption resumes: the sweep skips done jobs (use a gs:// --output to keep them).
#
# Example (a 4-worker v4-32 pod):
#   launch/tpu_vm.sh --name emergence-mmlu --zone us-central2-b --accelerator-type v4-32 --spot \
#     --config configs/paper/open_llama_v1_mmlu.yaml --output gs://my-bucket/sweeps/mmlu \
#     --models-from gs://my-bucket/checkpoints/open_llama_v1 --dry-run
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'USAGE'
usage: launch/tpu_vm.sh --name NAME --zone ZONE --config CONFIG [options]
  --name NAME              TPU VM name
  --zone ZONE              e.g. us-central2-b
  --config FILE            sweep config inside this checkout, e.g. configs/paper/open_llama_v1_mmlu.yaml
  --accelerator-type TYPE  v4-8 (one host, default), v4-32 (4 workers), v5litepod-16, ...
  --version VERSION        TPU software version (default tpu-ubuntu2204-base)
  --project PROJECT        Google Cloud project (default: gcloud's)
  --spot                   spot (preemptible) capacity
  --output DIR             sweep output_dir: gs://... (required for pods) or a folder on the VM (default runs/NAME)
  --results DIR            local folder the results are copied to (default results/NAME)
  --models-from GS_URL     copy checkpoints from this bucket folder to each worker first ...
  --models-to DIR          ... into this folder of the checkout (default checkpoints: config paths checkpoints/...)
  --data-from GS_URL       copy prepared TFDS data from this bucket folder into data/tfds (the sweep's default data_dir)
  --set KEY=VALUE          passed to `emergence-jax sweep --set` (repeatable)
  --keep                   do not delete the TPU at the end
  --dry-run                print every command instead of running it
USAGE
}

NAME="" ZONE="" CONFIG="" TYPE="v4-8" VERSION="tpu-ubuntu2204-base" PROJECT="" SPOT=0 OUTPUT="" RESULTS=""
MODELS_FROM="" MODELS_TO="checkpoints" DATA_FROM="" KEEP=0
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
    --config) CONFIG=$2 ;;
    --accelerator-type) TYPE=$2 ;;
    --version) VERSION=$2 ;;
    --project) PROJECT=$2 ;;
    --output) OUTPUT=$2 ;;
    --results) RESULTS=$2 ;;
    --models-from) MODELS_FROM=$2 ;;
    --models-to) MODELS_TO=$2 ;;
    --data-from) DATA_FROM=$2 ;;
    --set) SWEEP_SETS+=(--set "$2") ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift 2
done
[[ -n ${NAME} && -n ${ZONE} && -n ${CONFIG} ]] || die "--name, --zone and --config are required (see --help)"

# Hosts (workers) in a slice: 4 chips per host; v2-v5p sizes count TensorCores (2 per chip).
tpu_hosts() {
  local family=${1%-*} size=${1##*-}
  [[ ${size} =~ ^[0-9]+$ ]] || die "--accelerator-type $1: expected FAMILY-SIZE, e.g. v4-8 or v5litepod-16"
  case ${family} in
    v2 | v3 | v4 | v5p) echo $((size > 8 ? size / 8 : 1)) ;;
    v5litepod | v6e) echo $((size > 8 ? size / 4 : 1)) ;;
    *) die "--accelerator-type $1: unknown TPU family ${family} (v2, v3, v4, v5p, v5litepod, v6e)" ;;
  esac
}

HOSTS=$(tpu_hosts "${TYPE}")
OUTPUT=${OUTPUT:-runs/${NAME}}
RESULTS=${RESULTS:-results/${NAME}}
if [[ ${HOSTS} -gt 1 && ${OUTPUT} != gs://* ]]; then
  die "--accelerator-type ${TYPE} has ${HOSTS} workers; give a gs:// --output that all of them share"
fi
check_config "${CONFIG}"
ARCHIVE="${TMPDIR:-/tmp}/emergence_jax-src-${NAME}.tar.gz"
FLAGS=(--zone="${ZONE}")
[[ -n ${PROJECT} ]] && FLAGS+=(--project="${PROJECT}")
SWEEP_ARGS=(--config "${CONFIG}" --set "output_dir=${OUTPUT}")
[[ ${HOSTS} -gt 1 ]] && SWEEP_ARGS+=(--set distributed=true)
SWEEP_ARGS+=("${SWEEP_SETS[@]}")

finish() {
  local status=$?
  run mkdir -p "${RESULTS}"
  if [[ ${OUTPUT} == gs://* ]]; then
    run gcloud storage rsync --recursive "${OUTPUT}" "${RESULTS}" || echo "warning: copying results failed" >&2
  else
    run gcloud compute tpus tpu-vm scp --recurse "${NAME}:emergence_jax/${OUTPUT}/*" "${RESULTS}" "${FLAGS[@]}" --worker=0 ||
      echo "warning: copying results failed" >&2
  fi
  if [[ ${KEEP} -eq 0 ]]; then
    run gcloud compute tpus tpu-vm delete "${NAME}" "${FLAGS[@]}" --quiet || echo "warning: deleting ${NAME} failed" >&2
  fi
  exit "${status}"
}

CREATE=(gcloud compute tpus tpu-vm create "${NAME}" "${FLAGS[@]}" --accelerator-type="${TYPE}" --version="${VERSION}")
[[ ${SPOT} -eq 1 ]] && CREATE+=(--spot)
run "${CREATE[@]}"
trap finish EXIT
make_archive "${ARCHIVE}"
run gcloud compute tpus tpu-vm scp "${ARCHIVE}" "${NAME}:emergence_jax-src.tar.gz" "${FLAGS[@]}" --worker=all
run gcloud compute tpus tpu-vm ssh "${NAME}" "${FLAGS[@]}" --worker=all --command="$(install_command tpu)"
if [[ -n ${MODELS_FROM} ]]; then
  run gcloud compute tpus tpu-vm ssh "${NAME}" "${FLAGS[@]}" --worker=all --command="$(fetch_command "${MODELS_FROM}" "emergence_jax/${MODELS_TO}")"
fi
if [[ -n ${DATA_FROM} ]]; then
  run gcloud compute tpus tpu-vm ssh "${NAME}" "${FLAGS[@]}" --worker=all --command="$(fetch_command "${DATA_FROM}" emergence_jax/data/tfds)"
fi
run gcloud compute tpus tpu-vm ssh "${NAME}" "${FLAGS[@]}" --worker=all --command="$(sweep_command "${SWEEP_ARGS[@]}")"
