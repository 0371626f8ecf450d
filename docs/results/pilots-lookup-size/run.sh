#!/bin/bash
# The pilots behind the lookup study's size (docs/DECISIONS.md, "Lookup study size"), rerun with
# their files (issue 19): the configuration-5 student without KD trained 4 epochs on 4,000 and on
# 8,000 training clips, and MulT's complete teacher trained 8 epochs on 8,000 (data seed 1,
# training seed 1); per-epoch validation in each run's metrics.jsonl, test in eval.json, and the
# students' maps on the 1,000 test clips.
set -e
B=${MMKD:-target/debug/mmkd}
W=${WORK:-/tmp/pilots-lookup-size}
OUT=docs/results/pilots-lookup-size
for n in 4000 8000; do
  $B data synth --preset small --regime lookup --n-train $n --seed 1 --out $W/data-$n
  $B train student --config 5 --preset small --data $W/data-$n --seed 1 --epochs 4 --out $W/student-$n
  $B maps $W/student-$n --split test --samples 1000 --json --out $W/maps-student-$n > /dev/null
  cp $W/student-$n/eval.json $OUT/student-$n-eval.json
  cp $W/student-$n/metrics.jsonl $OUT/student-$n-metrics.jsonl
  cp $W/maps-student-$n/stats.json $OUT/student-$n-maps-test.json
done
$B train teacher --branch complete --preset small --data $W/data-8000 --seed 1 --epochs 8 --out $W/teacher-8000
cp $W/teacher-8000/eval.json $OUT/teacher-8000-eval.json
cp $W/teacher-8000/metrics.jsonl $OUT/teacher-8000-metrics.jsonl
