#!/bin/bash
# The audio-branch teacher alone (docs/DATA.md, "A teacher trained with branch dropout": the
# limit case whose only route to the event is `V<-A`), as the lookup study's teachers: 8,000
# training clips, data seed 1, training seed 1, 6 epochs; its maps on the 1,000 test clips.
set -e
B=${MMKD:-target/debug/mmkd}
W=${WORK:-/tmp/teacher-audio}
OUT=docs/results/teacher-audio
$B data synth --preset small --regime lookup --n-train 8000 --seed 1 --out $W/data
$B train teacher --branch audio --preset small --data $W/data --seed 1 --epochs 6 --out $W/teacher
$B maps $W/teacher --split test --samples 1000 --json --out $W/maps-test-1000 > /dev/null
cp $W/teacher/config.json $OUT/config.json
cp $W/teacher/eval.json $OUT/eval.json
cp $W/maps-test-1000/stats.json $OUT/maps-test-1000.json
