#!/usr/bin/env bash
# Submit the study in /work/big/study-paper as Slurm job arrays, each after the previous one succeeded.
# Each array task runs one line of a plan file (every line names its --device).
# Submit from a login node:   bash /work/big/study-paper/slurm.sh
# Add site options (partition, account) through SBATCH_* variables, e.g. SBATCH_PARTITION=gpu.
set -euo pipefail
cd "$(dirname "$0")"
submit() { # plan file, job name, dependency, then sbatch options
  local file=$1 name=$2 dep=$3; shift 3
  local n; n=$(wc -l < "$file")
  sbatch --parsable --job-name="$name" --array=1-"$n" ${dep:+--dependency=afterok:$dep} "$@" \
    --output=logs/%x-%A_%a.out --wrap "bash -c \"\$(sed -n \${SLURM_ARRAY_TASK_ID}p $file)\""
}
mkdir -p logs
prev=""
# data: 1 run(s). memory: twice the data in memory + 2 GB; time: 1 h
prev=$(submit plan-0.txt mmkd-plan-0 "$prev" --cpus-per-task=2 --mem=15G --time=0-01:45:00)
echo "submitted data: job $prev"
# teachers and no-KD students: 25 run(s). memory: 1.25x the dry run's peak RSS; time: 1.5x the dry run's epoch time x epochs + 15 min
prev=$(submit plan-1.txt mmkd-plan-1 "$prev" --cpus-per-task=8 --mem=17G --time=13-02:10:00)
echo "submitted teachers and no-KD students: job $prev"
# distilled students: 70 run(s). memory: 1.25x the dry run's peak RSS; time: 1.5x the dry run's epoch time x epochs + 15 min
prev=$(submit plan-2.txt mmkd-plan-2 "$prev" --cpus-per-task=8 --mem=22G --time=20-02:03:00)
echo "submitted distilled students: job $prev"
echo "when the last array has finished: mmkd study --collect /work/big/study-paper"
