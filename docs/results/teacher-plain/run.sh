#!/bin/bash
# MulT's plain complete teacher of the lookup study without branch dropout
# (docs/results/lookup-plain-teacher/: `study --teacher-seed 1 --teacher-epochs 6`), trained again
# alone with the same seed and epochs, and its maps on the 200 test clips the RESULTS tables use
# and on 1,000: the per-layer event shares RESULTS-synthetic-lookup.md quotes for it (issue 19).
set -e
B=${MMKD:-target/debug/mmkd}
W=${WORK:-/tmp/teacher-plain}
OUT=docs/results/teacher-plain
$B data synth --preset small --regime lookup --n-train 8000 --seed 1 --out $W/data
$B train teacher --branch complete --preset small --data $W/data --seed 1 --epochs 6 --out $W/teacher
$B maps $W/teacher --split test --samples 200 --json --out $W/maps-test-200 > /dev/null
$B maps $W/teacher --split test --samples 1000 --json --out $W/maps-test-1000 > /dev/null
cp $W/teacher/config.json $OUT/config.json
cp $W/teacher/eval.json $OUT/eval.json
cp $W/maps-test-200/stats.json $OUT/maps-test-200.json
cp $W/maps-test-1000/stats.json $OUT/maps-test-1000.json
