#!/bin/bash
# Re-make the branch-dropout choice on the validation split (issue 19): the lookup study's data,
# teachers at p = 0.25 and 0.5 (6 epochs, training seed 1, as the choice was made), their maps on
# the validation clips (1,000), then on the test clips once.
set -e
B=/tmp/mmkd-sel
D=/tmp/k3/study-lookup-k3/data
for p in 0.25 0.5; do
  $B train teacher --branch complete --preset small --data $D --seed 1 --epochs 6 --branch-dropout $p --out /tmp/sel/teacher-bd$p
  $B maps /tmp/sel/teacher-bd$p --split valid --samples 1000 --json --out /tmp/sel/maps-valid-bd$p > /tmp/sel/valid-bd$p.json
  $B maps /tmp/sel/teacher-bd$p --split test --samples 1000 --json --out /tmp/sel/maps-test-bd$p > /tmp/sel/test-bd$p.json
done
