#!/usr/bin/env bash
# Submit hposteer pilots to Slurm: COUNT jobs (a job array) of hposteer-pilot.sbatch, each one pilot
# on one node (docs/operator.md, "Pilots under Slurm and HTCondor").
#
#   deploy/batch/slurm/submit-pilots.sh --server https://hpo.example.org \
#       --token-file ~/.hposteer/pilot-token --count 4 --gpus 2 --time 24:00:00 --partition gpu
#
# Options (defaults in brackets):
#   --server URL          the service [$HPOSTEER_SERVER]
#   --token-file FILE     a pilot token, on a file system the nodes see, mode 0600 [$HPOSTEER_TOKEN_FILE]
#   --count N             pilots (jobs) [1]
#   --gpus N              GPUs per job: one slot per GPU [0: CPU-only slots]
#   --gpus-per-slot N     GPUs per slot instead [1]
#   --slots N             CPU-only slots per job, without --gpus [1]
#   --cpus N              CPUs per job, shared by the slots' numeric libraries [4]
#   --mem SIZE            memory per job, e.g. 32G [the partition's default]
#   --time T              wall time, Slurm's format (12:00:00, 2-00:00:00) [12:00:00]
#   --drain-before S      drain this many seconds before the wall time ends [600]
#   --idle S              a pilot without work for S seconds ends its job [600]
#   --site NAME           site name, matched against tasks' --site [LOCAL]
#   --runtime R           local | apptainer | singularity | podman | docker [local]
#   --pilot PATH          the `hposteer` program on the nodes [hposteer on PATH]
#   --pilot-args "..."    more `hposteer pilot` options
#   --partition P, --account A, --qos Q
#   -- ...                anything after -- goes to sbatch as is
# The settings travel to the job in its environment (sbatch exports the submitter's environment).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "submit-pilots: $*" >&2; exit 2; }

server="${HPOSTEER_SERVER:-}" token_file="${HPOSTEER_TOKEN_FILE:-}" count=1 gpus=0 per_slot=1 slots=1
cpus=4 mem="" wall=12:00:00 drain=600 idle=600 site=LOCAL runtime=local pilot="" pilot_args=""
sbatch_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --server) server="$2"; shift 2 ;;
    --token-file) token_file="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --gpus) gpus="$2"; shift 2 ;;
    --gpus-per-slot) per_slot="$2"; shift 2 ;;
    --slots) slots="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --mem) mem="$2"; shift 2 ;;
    --time) wall="$2"; shift 2 ;;
    --drain-before) drain="$2"; shift 2 ;;
    --idle) idle="$2"; shift 2 ;;
    --site) site="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    --pilot) pilot="$2"; shift 2 ;;
    --pilot-args) pilot_args="$2"; shift 2 ;;
    --partition|--account|--qos) sbatch_opts+=("$1=$2"); shift 2 ;;
    --) shift; sbatch_opts+=("$@"); break ;;
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
for n in "$count" "$gpus" "$per_slot" "$slots" "$cpus" "$drain" "$idle"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "not a number: $n"
done
[ "$count" -ge 1 ] || die "--count must be 1 or more"

# Slurm's time formats (minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds) in seconds; empty for one it does not know.
wall_seconds() {
  local t="$1" days=0 a b c
  if [[ "$t" =~ ^([0-9]+)-(.*)$ ]]; then
    days="${BASH_REMATCH[1]}" t="${BASH_REMATCH[2]}"
    IFS=: read -r a b c <<< "$t"
    echo $(( days * 86400 + 10#${a:-0} * 3600 + 10#${b:-0} * 60 + 10#${c:-0} ))
  elif [[ "$t" =~ ^[0-9]+(:[0-9]+){0,2}$ ]]; then
    IFS=: read -r a b c <<< "$t"
    if [ -n "$c" ]; then echo $(( 10#$a * 3600 + 10#$b * 60 + 10#$c ))
    elif [ -n "$b" ]; then echo $(( 10#$a * 60 + 10#$b ))
    else echo $(( 10#$a * 60 )); fi
  fi
}
wall_s="$(wall_seconds "$wall")"
[ -n "$wall_s" ] || die "--time $wall is not in Slurm's format (minutes, HH:MM:SS, D-HH:MM:SS, ...)"
[ "$drain" -lt "$wall_s" ] || die "--drain-before $drain is not shorter than --time $wall ($wall_s s): the pilot would drain as soon as it starts"

opts=(--job-name=hposteer-pilot --nodes=1 --ntasks=1 --cpus-per-task="$cpus" --time="$wall"
      --signal="B:TERM@$drain")
if [ "$count" -eq 1 ]; then
  opts+=(--output=hposteer-pilot-%j.log)
else
  opts+=(--array="1-$count" --output=hposteer-pilot-%A_%a.log)
fi
[ "$gpus" -eq 0 ] || opts+=(--gres="gpu:$gpus")
[ -z "$mem" ] || opts+=(--mem="$mem")

export HPOSTEER_SERVER="$server" HPOSTEER_TOKEN_FILE="$token_file"
export HPOSTEER_PILOT_SITE="$site" HPOSTEER_PILOT_RUNTIME="$runtime" HPOSTEER_PILOT_IDLE="$idle"
export HPOSTEER_PILOT_GPUS_PER_SLOT="$per_slot" HPOSTEER_PILOT_SLOTS="$slots" HPOSTEER_PILOT_ARGS="$pilot_args"
[ -z "$pilot" ] || export HPOSTEER_PILOT_COMMAND="$pilot"
unset HPOSTEER_TOKEN  # the token travels as a file, never in the job's stored environment
exec sbatch "${opts[@]}" "${sbatch_opts[@]}" "$here/hposteer-pilot.sbatch"
