#!/usr/bin/env python3
"""Write a MOSEI-sized pickle in MulT's layout, to measure the readers on a realistic file.

    python3 crates/mmkd-pickle/scripts/make_mosei_sized.py /tmp/mosei_sized.pkl [--scale 0.01] [--seed 0]

The file has the shape of MulT's unaligned CMU-MOSEI packaging (mosei_senti_data_noalign.pkl):
{split: {"text": (N, 50, 300), "audio": (N, 500, 74), "vision": (N, 500, 35), "labels": (N, 1, 1),
"id": (N, 3)}} with N = 16326 / 1871 / 4659 for train / valid / test (22 856 clips), float32
features, pickle protocol 4: about 6.4 GB. The features are random normals, with a few NaN / +inf /
-inf planted in each split (audio -inf as COVAREP writes for silence), so the readers' repairs have
something to count; labels are uniform in [-3.2, 3.2] (a few get clipped). `--scale` shrinks every
split (for trying the script out).

Memory: the stream is written one array at a time, and an array's bytes go to the file straight from
the array (no `tobytes()` copy), so Python's peak is about the largest single array (train audio,
2.4 GB) plus the interpreter, not the file. Only numpy is needed. `pickle.load` reads the result
back as usual (each array as numpy's own `_reconstruct` + BUILD, exactly like `pickle.dump` of the
dict, except that nothing is memoized).
"""

import argparse
import pickle
import struct
import sys
import time

import numpy as np

SPLITS = [("train", 16326), ("valid", 1871), ("test", 4659)]
FEATURES = [("text", (50, 300)), ("audio", (500, 74)), ("vision", (500, 35))]


class RawData:
    """The bytes of a C-contiguous array, to be pickled as `bytes` without copying them."""

    def __init__(self, array):
        self.array = array


class StreamPickler(pickle._Pickler):
    """The pure-Python pickler, with numpy arrays written the way numpy pickles them
    (`_reconstruct(ndarray, (0,), b'b')` + BUILD `(1, shape, dtype, is_fortran, raw)`) but with the raw
    data streamed from the array's memory instead of through `ndarray.tobytes()`."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_ndarray(self, array):
        if array.dtype.hasobject or not array.flags.c_contiguous:
            self.save_reduce(*array.__reduce_ex__(self.proto), obj=array)
            return
        # numpy's own reduction of an empty array of this dtype gives the callable, its arguments and
        # the state layout; only the shape and the data differ.
        func, args, (version, _, dtype, is_fortran, _) = np.empty(0, array.dtype).__reduce_ex__(
            self.proto
        )
        state = (version, array.shape, dtype, is_fortran, RawData(array))
        self.save_reduce(func, args, state, obj=array)

    def save_raw(self, raw):
        data = memoryview(raw.array).cast("B")
        n = data.nbytes
        # The opcodes `save_bytes` chooses for a bytes object of this length; large payloads are
        # written directly, outside any frame.
        if n <= 0xFF:
            self.write(pickle.SHORT_BINBYTES + struct.pack("<B", n) + data.tobytes())
        elif n > 0xFFFFFFFF:
            self._write_large_bytes(pickle.BINBYTES8 + struct.pack("<Q", n), data)
        else:
            self._write_large_bytes(pickle.BINBYTES + struct.pack("<I", n), data)

    dispatch[np.ndarray] = save_ndarray
    dispatch[RawData] = save_raw


def features(rng, n, shape, key, split):
    """Random float32 features with a few non-finite values planted."""
    array = rng.standard_normal((n, *shape), dtype=np.float32)
    if n > 0:
        flat = array.reshape(-1)
        picks = rng.integers(0, flat.size, size=12)
        if key == "audio":
            flat[picks[:8]] = -np.inf  # COVAREP log-energy of silence
            flat[picks[8:10]] = np.nan
        elif key == "vision":
            flat[picks[:2]] = np.nan
            flat[picks[2:3]] = np.inf
    return array


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="where to write the pickle (e.g. /tmp/mosei_sized.pkl)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real split sizes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    started = time.time()
    with open(args.out, "wb") as f:
        p = StreamPickler(f, protocol=4)
        # No memo: nothing stays referenced once written (and no array is ever shared).
        p.fast = True
        # What `Pickler.dump` does around `save(obj)`, with the dict written item by item.
        p.write(pickle.PROTO + struct.pack("<B", 4))
        p.framer.start_framing()
        p.write(pickle.EMPTY_DICT)
        for split, full_n in SPLITS:
            n = max(1, round(full_n * args.scale))
            p.save(split)
            p.write(pickle.EMPTY_DICT)
            for key, shape in FEATURES:
                array = features(rng, n, shape, key, split)
                p.save(key)
                p.save(array)
                p.write(pickle.SETITEM)
                del array
                print(
                    f"make_mosei_sized: {split}/{key} {(n, *shape)} written, {f.tell() / 1e9:.2f} GB, "
                    f"{time.time() - started:.0f} s",
                    file=sys.stderr,
                )
            labels = rng.uniform(-3.2, 3.2, size=(n, 1, 1)).astype(np.float32)
            p.save("labels")
            p.save(labels)
            p.write(pickle.SETITEM)
            ids = np.array(
                [[f"vid{split}{i // 7:05d}", f"{i % 7}.0", f"{i % 7 + 1}.5"] for i in range(n)],
                dtype="<U16",
            )
            p.save("id")
            p.save(ids)
            p.write(pickle.SETITEM)
            p.write(pickle.SETITEM)  # split dict into the top-level dict
        p.write(pickle.STOP)
        p.framer.end_framing()
        size = f.tell()
    print(
        f"make_mosei_sized: wrote {args.out}: {size} bytes ({size / 1e9:.2f} GB) in "
        f"{time.time() - started:.0f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
