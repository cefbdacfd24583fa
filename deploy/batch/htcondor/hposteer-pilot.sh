#!/bin/bash
# The executable of hposteer-pilot.sub: one `hposteer pilot` on an HTCondor execute point (docs/operator.md,
# "Pilots under Slurm and HTCondor"). HTCondor transfers this file and the token file into the job's
# scratch directory and sets the environment from the submit description:
#   HPOSTEER_SERVER              the service URL (required)
#   HPOSTEER_TOKEN_FILE          the pilot token file; a relative name is taken in the scratch directory
#   HPOSTEER_PILOT_COMMAND       the pilot program on the execute point (default: hposteer on PATH)
#   HPOSTEER_PILOT_SITE          site name matched against tasks' --site (default LOCAL)
#   HPOSTEER_PILOT_RUNTIME       local | apptainer | singularity | podman | docker (default local)
#   HPOSTEER_PILOT_GPUS_PER_SLOT GPUs of one slot (default 1); the GPUs are the job's (CUDA_VISIBLE_DEVICES)
#   HPOSTEER_PILOT_SLOTS         CPU-only slots when the job has no GPUs (default 1)
#   HPOSTEER_PILOT_CPUS          the job's CPUs (request_cpus), shared by the slots' numeric libraries
#   HPOSTEER_PILOT_IDLE          exit after this many seconds without work (default 600)
#   HPOSTEER_PILOT_LIFETIME      drain after this many seconds (default: never)
#   HPOSTEER_PILOT_WORKDIR       working directories (default: in the job's scratch directory)
#   HPOSTEER_PILOT_KEEP_WORKDIRS 1: keep every attempt's working directory
#   HPOSTEER_PILOT_ARGS          more `hposteer pilot` options, split on spaces
# SIGTERM (condor_rm, eviction, the end of a slot's lease) drains the pilot: running evaluations finish
# and are reported, none start; a second SIGTERM stops them (the service retries them elsewhere).
set -euo pipefail

log() { echo "$(date '+%F %T') hposteer-pilot.sh: $*" >&2; }
fail() { log "error: $*"; exit 2; }

# "0,1,2,3" and 2 GPUs per slot -> "0,1:2,3" (--workers). Older HTCondor names GPUs CUDA0, CUDA1.
gpu_workers() {
  local per="$2" spec="" group="" n=0 id ids
  IFS=, read -ra ids <<< "$1"
  for id in "${ids[@]}"; do
    id="${id#CUDA}"
    [[ "$id" =~ ^[0-9]+$ ]] || fail "GPU id '$id' is not a number: hposteer pilot --workers takes GPU indices, not UUIDs (configure the execute point to give indices, or ask for UUID support)"
    group="${group:+$group,}$id"
    n=$((n + 1))
    if [ "$n" -eq "$per" ]; then spec="${spec:+$spec:}$group"; group=""; n=0; fi
  done
  [ -z "$group" ] || log "GPU(s) $group left unused: fewer than $per for a slot"
  [ -n "$spec" ] || fail "fewer GPUs ($1) than HPOSTEER_PILOT_GPUS_PER_SLOT=$per"
  echo "$spec"
}

scratch="${_CONDOR_SCRATCH_DIR:-$PWD}"
[ -n "${HPOSTEER_SERVER:-}" ] || fail "HPOSTEER_SERVER is empty: submit with server=URL"
if [ -z "${HPOSTEER_TOKEN:-}" ]; then
  [ -n "${HPOSTEER_TOKEN_FILE:-}" ] || fail "HPOSTEER_TOKEN_FILE is empty: submit with token_file=FILE"
  case "$HPOSTEER_TOKEN_FILE" in /*) ;; *) HPOSTEER_TOKEN_FILE="$scratch/$HPOSTEER_TOKEN_FILE" ;; esac
  [ -r "$HPOSTEER_TOKEN_FILE" ] || fail "cannot read the token file $HPOSTEER_TOKEN_FILE"
  export HPOSTEER_TOKEN_FILE
fi
export HPOSTEER_SERVER
pilot="${HPOSTEER_PILOT_COMMAND:-hposteer}"
command -v "$pilot" >/dev/null || fail "no $pilot on $(hostname) (submit with pilot=PATH)"
job="$$"
if [ -r "${_CONDOR_JOB_AD:-}" ]; then  # ClusterId.ProcId, as condor_q shows the job
  job="$(sed -n 's/^ClusterId = //p' "$_CONDOR_JOB_AD").$(sed -n 's/^ProcId = //p' "$_CONDOR_JOB_AD")"
fi

gpus="${CUDA_VISIBLE_DEVICES:-${_CONDOR_AssignedGPUs:-}}"
# Some HTCondor versions set 10000 (no such GPU) to hide a machine's GPUs from a job that asked for none.
if [ -n "$gpus" ] && [ "$gpus" != "10000" ]; then
  workers="$(gpu_workers "$gpus" "${HPOSTEER_PILOT_GPUS_PER_SLOT:-1}")"
  slots=(--workers "$workers")
  count=$(( $(tr -cd : <<< "$workers" | wc -c) + 1 ))
else
  count="${HPOSTEER_PILOT_SLOTS:-1}"
  slots=(--slots "$count")
fi
threads=()
if [ -n "${HPOSTEER_PILOT_CPUS:-}" ]; then
  per_slot=$(( HPOSTEER_PILOT_CPUS / count ))
  threads=(--threads-per-slot "$(( per_slot > 0 ? per_slot : 1 ))")
  # HTCondor sets OMP_NUM_THREADS to request_cpus, which the pilot would hand to every slot as is.
  unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS MKL_NUM_THREADS NUMEXPR_NUM_THREADS
fi
workdir="${HPOSTEER_PILOT_WORKDIR:-$scratch/hposteer-pilot}"
mkdir -p "$workdir"
read -ra extra <<< "${HPOSTEER_PILOT_ARGS:-}"
clean=(--clean-workdirs)
[ "${HPOSTEER_PILOT_KEEP_WORKDIRS:-0}" != 1 ] || clean=()

args=(pilot --site "${HPOSTEER_PILOT_SITE:-LOCAL}" --runtime "${HPOSTEER_PILOT_RUNTIME:-local}" "${slots[@]}"
      "${threads[@]}" --workdir "$workdir" --name "condor-$job-$(hostname -s)" "${clean[@]}"
      --exit-when-idle "${HPOSTEER_PILOT_IDLE:-600}" "${extra[@]}")
log "job $job on $(hostname): $pilot ${args[*]}"

# The pilot runs as a child, so that this shell can pass HTCondor's signal on and drain at the lifetime.
"$pilot" "${args[@]}" &
pid=$!
# shellcheck disable=SC2317  # called by the trap
forward() { log "signal: passing SIGTERM to the pilot"; kill -TERM "$pid" 2>/dev/null || true; }
trap forward TERM INT
deadline=""
[ -z "${HPOSTEER_PILOT_LIFETIME:-}" ] || deadline=$(( SECONDS + HPOSTEER_PILOT_LIFETIME ))
while kill -0 "$pid" 2>/dev/null; do
  if [ -n "$deadline" ] && [ "$SECONDS" -ge "$deadline" ]; then
    log "lifetime of ${HPOSTEER_PILOT_LIFETIME} s reached: draining"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=""
  fi
  sleep 1 & wait $! || true
done
status=0
wait "$pid" || status=$?
log "pilot exited with status $status"
exit "$status"
