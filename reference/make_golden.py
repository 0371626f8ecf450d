"""Write the golden fixtures that mmkd's test suite replays (crates/mmkd/tests/golden.rs):
every teacher and student network at a tiny shape in eval mode, a key-padding case, MulT's 2d
temporal width, three optimiser steps of the training recipe (cross-entropy, global-norm
gradient clipping, Adam) for the complete teacher and the configuration-5 student, and three
steps of distillation (alpha * CE + beta * L_KD, reference/distill_ref.py) for every level and
method: CRD on the final and penultimate layers (memory banks), CRD on post-attention outputs and
attention maps (in-batch negatives), EDAM-S in both orientations and with the shuffled-teacher
control, EDAM-T on configurations 5 and 3 (key axis only; query and key axes).

    python reference/make_golden.py                   # rewrites tests/golden/
    python reference/make_golden.py --distill-only    # rewrites only the distill-* cases

The fixtures are committed; regenerate them only when the networks are meant to change, and say
why in the commit.
"""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import NETWORKS, make_case, model_json, shape_json  # noqa: E402
from distill_ref import make_distill_case  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")

# Tiny but not degenerate: three lengths (so cross-modal masks have offsets and the student's
# streams are downsampled 6 -> 4 and 6 -> 3), feature dims that differ, 2 layers, 2 heads.
SHAPE = shape_json(text=3, audio=4, video=6, dims=(5, 4, 3), n=6)
MODEL = model_json(8, 2, 2)
TRAIN = {"lr": 1e-3, "adam_epsilon": 1e-8, "grad_clip": 0.5, "steps": [[0, 1, 2], [3, 4, 5], [1, 3, 5]]}


# (name, configuration, level, method, options); every case: temperature 2 (eq. 10-11, so a map
# at T != 1 is distilled), alpha 1, beta 0.8, the CRD bank seeded with 7.
DISTILL = [
    ("distill-crd-final", 5, "final", "crd", {}),
    ("distill-crd-penultimate", 5, "penultimate", "crd", {}),
    ("distill-crd-post-attention", 5, "post-attention", "crd", {}),
    ("distill-crd-attention-map", 5, "attention-map", "crd", {}),
    ("distill-edam-s", 5, "attention-map", "edam-s", {}),
    ("distill-edam-s-conventional", 5, "attention-map", "edam-s", {"orientation": "conventional"}),
    ("distill-edam-s-shuffled", 5, "attention-map", "edam-s", {"teacher_signal": "shuffled"}),
    ("distill-edam-t", 5, "attention-map", "edam-t", {}),
    ("distill-edam-t-config3", 3, "attention-map", "edam-t", {}),
]


def write_distill_cases():
    for i, (name, config, level, method, options) in enumerate(DISTILL):
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        d = {"level": level, "method": method, "orientation": "literal", "temperature": 2.0, "alpha": 1.0, "beta": 0.8,
             "teacher_signal": "matched", "bank_seed": 7}
        d.update(options)
        make_distill_case(path, name, config, d, MODEL, SHAPE, n=6, seed=400 + i, train=TRAIN)


def main():
    if "--distill-only" in sys.argv[1:]:
        write_distill_cases()
        print("wrote", len(DISTILL), "distillation cases to", os.path.normpath(ROOT))
        return
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    for i, (name, network) in enumerate(NETWORKS):
        make_case(os.path.join(ROOT, name), name, network, MODEL, SHAPE, n=3, seed=100 + i)
    make_case(os.path.join(ROOT, "teacher-audio-width2d"), "teacher-audio-width2d", {"teacher": "audio"},
              model_json(8, 2, 2, temporal_width_2d=True), SHAPE, n=3, seed=200)
    make_case(os.path.join(ROOT, "teacher-complete-keypad"), "teacher-complete-keypad", {"teacher": "complete"},
              model_json(8, 2, 2, key_padding_mask=True), SHAPE, n=3, seed=201)
    make_case(os.path.join(ROOT, "student5-full-length-keypad"), "student5-full-length-keypad",
              {"student": 5, "streams": "full-length"}, model_json(8, 2, 2, key_padding_mask=True), SHAPE, n=3, seed=202)
    make_case(os.path.join(ROOT, "train-teacher-complete"), "train-teacher-complete", {"teacher": "complete"},
              MODEL, SHAPE, n=6, seed=300, temperatures=(), train=TRAIN)
    make_case(os.path.join(ROOT, "train-student5-downsampled"), "train-student5-downsampled",
              {"student": 5, "streams": "downsampled"}, MODEL, SHAPE, n=6, seed=301, temperatures=(), train=TRAIN)
    write_distill_cases()
    print("wrote", len(os.listdir(ROOT)), "cases to", os.path.normpath(ROOT))


if __name__ == "__main__":
    main()
