# shellcheck shell=bash
# Helpers shared by launch/tpu_vm.sh and launch/gpu_vm.sh (sourced, not run).

DRY_RUN=0

die() {
  echo "error: $*" >&2
  exit 2
}

# One argument as the shell would need it: bare when it holds only safe characters, else single-quoted.
shell_quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# Print a command line as "+ cmd arg ..." (quoted so it can be pasted into a shell).
print_command() {
  local line="+" arg
  for arg in "$@"; do
    line+=" $(shell_quote "${arg}")"
  done
  printf '%s\n' "${line}"
}

# Run a command, or only print it with --dry-run.
run() {
  print_command "$@"
  if [[ ${DRY_RUN} -eq 0 ]]; then
    "$@"
  fi
}

# The sweep config must be a file of this checkout, named relative to its root (the remote runs in
# its copy of the checkout); a typo fails here, before any machine is created.
check_config() {
  local config=$1 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  [[ ${config} != /* ]] || die "--config ${config}: give the path inside this checkout, e.g. configs/paper/open_llama_v1.yaml"
  [[ -f ${root}/${config} ]] || die "--config ${config}: no such file in ${root}; see configs/ and configs/paper/"
}

# Pack the working tree (tracked files and untracked ones git does not ignore) into a tarball.
make_archive() {
  local archive=$1 root
  root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
  printf '+ (cd %s && git ls-files -z --cached --others --exclude-standard | tar --null -T - -czf %s)\n' \
    "$(shell_quote "${root}")" "$(shell_quote "${archive}")"
  if [[ ${DRY_RUN} -eq 0 ]]; then
    (cd "${root}" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -czf "${archive}")
  fi
}

# The remote shell command that unpacks the tarball over ~/emergence_jax (keeping fetched checkpoints
# and data there) and installs the project with the JAX flavour $1 (tpu, cuda12).
install_command() {
  local jax_extra=$1
  printf '%s' "mkdir -p emergence_jax && tar -xzf emergence_jax-src.tar.gz -C emergence_jax" \
    " && python3 -m venv venv && venv/bin/pip install -q -U pip" \
    " && venv/bin/pip install -q -e './emergence_jax[gcs]' 'jax[${jax_extra}]'"
}

# The remote shell command that runs the sweep; extra words are passed to `emergence-jax sweep`.
sweep_command() {
  local words="cd emergence_jax && ../venv/bin/emergence-jax sweep" arg
  for arg in "$@"; do
    words+=" $(shell_quote "${arg}")"
  done
  printf '%s' "${words} 2>&1 | tee -a ../sweep.log; exit \${PIPESTATUS[0]}"
}

# The remote shell command that copies checkpoints (or data) from a bucket into a local folder.
fetch_command() {
  printf '%s' "mkdir -p $(shell_quote "$2") && gcloud storage rsync --recursive $(shell_quote "$1") $(shell_quote "$2")"
}
