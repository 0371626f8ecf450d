#!/bin/bash
# The second branch-dropout teacher of RESULTS-synthetic-lookup.md ("Item 3 holds for this
# teacher, not for branch dropout as such"), rerun with a data file (issue 19): the main job's
# teacher recipe (complete, branch dropout 0.25, 6 epochs) with training seed 2, on the lookup
# study's data (8,000 training clips, data seed 1), its maps on 1,000 test clips as the first
# measurement was made, and on 1,000 validation clips.
set -e
B=${MMKD:-target/debug/mmkd}
W=${WORK:-/tmp/teacher-seed2}
OUT=docs/results/teacher-seed2
$B data synth --preset small --regime lookup --n-train 8000 --seed 1 --out $W/data
$B train teacher --branch complete --preset small --data $W/data --seed 2 --epochs 6 --branch-dropout 0.25 --out $W/teacher
$B maps $W/teacher --split test --samples 1000 --json --out $W/maps-test > $W/maps-test.json
$B maps $W/teacher --split valid --samples 1000 --json --out $W/maps-valid > $W/maps-valid.json
cp $W/teacher/config.json $OUT/config.json
cp $W/teacher/eval.json $OUT/eval.json
cp $W/maps-test/stats.json $OUT/maps-test.json
cp $W/maps-valid/stats.json $OUT/maps-valid.json
