#!/usr/bin/env bash
# Submit hposteer pilots to HTCondor: COUNT jobs of hposteer-pilot.sub (docs/operator.md, "Pilots under
# Slurm and HTCondor"). The jobs' .out/.err/.log files go to the current directory.
#
#   deploy/batch/htcondor/submit-pilots.sh --server https://hpo.example.org \
#       --token-file ~/.hposteer/pilot-token --count 4 --gpus 1 --lifetime 43200
#
# Options (defaults in brackets):
#   --server URL          the service [$HPOSTEER_SERVER]
#   --token-file FILE     a pilot token, mode 0600; transferred with each job [$HPOSTEER_TOKEN_FILE]
#   --count N             pilots (jobs) [1]
#   --gpus N              GPUs per job: one slot per GPU [0: CPU-only slots]
#   --gpus-per-slot N     GPUs per slot instead [1]
#   --slots N             CPU-only slots per job, without --gpus [1]
#   --cpus N, --memory SIZE, --disk SIZE    the job's request [4, 8GB, 20GB]
#   --lifetime S          the pilot drains after S seconds [86400]
#   --drain S             grace between SIGTERM and SIGKILL on removal or eviction [600]
#   --idle S              a pilot without work for S seconds ends its job [600]
#   --site NAME           site name, matched against tasks' --site [LOCAL]
#   --runtime R           local | apptainer | singularity | podman | docker [local]
#   --pilot PATH          the `hposteer` program on the execute points [hposteer on PATH]
#   --pilot-args "..."    more `hposteer pilot` options
#   -- ...                anything after -- goes to condor_submit as is
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "submit-pilots: $*" >&2; exit 2; }

server="${HPOSTEER_SERVER:-}" token_file="${HPOSTEER_TOKEN_FILE:-}"
vars=() extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --server) server="$2"; shift 2 ;;
    --token-file) token_file="$2"; shift 2 ;;
    --count|--gpus|--slots|--cpus|--lifetime|--drain|--idle)
      [[ "$2" =~ ^[0-9]+$ ]] || die "$1 takes a number, not $2"
      vars+=("${1#--}=$2"); shift 2 ;;
    --gpus-per-slot) [[ "$2" =~ ^[0-9]+$ ]] || die "$1 takes a number"; vars+=("gpus_per_slot=$2"); shift 2 ;;
    --memory|--disk|--site|--runtime|--pilot) vars+=("${1#--}=$2"); shift 2 ;;
    --pilot-args) [[ "$2" != *"'"* ]] || die "--pilot-args cannot hold single quotes"; vars+=("pilot_args=$2"); shift 2 ;;
    --) shift; extra+=("$@"); break ;;
    -h|--help) usage ;;
    *) die "unknown option $1 (--help)" ;;
  esac
done
[ -n "$server" ] || die "--server URL (or HPOSTEER_SERVER) is required"
[ -n "$token_file" ] || die "--token-file FILE (or HPOSTEER_TOKEN_FILE) is required"
[ -r "$token_file" ] || die "cannot read the token file $token_file"
token_file="$(cd "$(dirname "$token_file")" && pwd)/$(basename "$token_file")"
if [ -n "$(find "$token_file" -perm /077)" ]; then
  echo "submit-pilots: warning: $token_file is readable by others; chmod 600 it" >&2
fi
exec condor_submit "${extra[@]}" "$here/hposteer-pilot.sub" "server=$server" "token_file=$token_file" \
  "wrapper=$here/hposteer-pilot.sh" "${vars[@]}"
