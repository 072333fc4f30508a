"""Stored adversarial examples: the float32 arrays as crafted, beside a cell's records.

    <run>/cells/<id>.examples.npz                 a finished cell's examples (sealed in <id>.json)
    <run>/cells/<id>.shards/NNNNN.examples.npz    one shard's, before the merge

Each file is a compressed NumPy ``.npz`` (zlib level 1: lossless, 34-88% of the raw float32 bytes
for 224 px ImageNet examples, bench/bench_examples_store.py; ``np.load`` reads it without hbbench or
pickle) of these arrays, one row per stored image: ``sample`` (the image's index in the run's data,
int64), ``sample_id`` (its id, as the records name it), ``x_adv`` (float32, N x C x H x W, in [0, 1]:
the input the cell's defense received, exactly as the attack returned it) and, in a cell with a
defense, ``x_defended`` (float32, the same shape: what the defense made of ``x_adv``, the input the
network classified; the report's panels show it). How many images a cell keeps is
``--save-examples`` (``SweepOptions.save_examples``, default ``hbbench.options.SAVE_EXAMPLES``): the
first N images of the run (``all``: every one; 0: none). The report's example panels and ``hbbench
export`` read these files; nothing crafts them again."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from hbbench.errors import HBBenchError

SUFFIX = "examples.npz"
FIELDS = ("sample", "sample_id", "x_adv")
COMPRESS_LEVEL = 1  # zlib's fastest: see to_bytes
DEFENDED = "x_defended"  # only in a cell with a defense (and absent in runs stored before it)


def select(start: int, stop: int, keep: int | None) -> np.ndarray:
    """Positions within a shard [start, stop) of the images a cell keeps: those among the run's first
    ``keep`` (None: all), so any sharding stores the same images."""
    samples = np.arange(start, stop)
    return np.arange(stop - start) if keep is None else np.flatnonzero(samples < keep)


def to_bytes(sample, sample_id, x_adv, x_defended=None) -> bytes:
    """The ``.npz`` bytes of one file (written atomically by the caller): what ``np.savez_compressed``
    writes, at zlib level 1 instead of its fixed 6. On 224 px examples level 6 took 1.3-5x the time for
    1-14% fewer bytes (bench/bench_examples_store.py), and every sweep pays it for every cell."""
    arrays = {"sample": np.asarray(sample, np.int64), "sample_id": np.asarray([str(s) for s in sample_id], dtype=str),
              "x_adv": np.ascontiguousarray(x_adv, dtype=np.float32)}
    if x_defended is not None:
        arrays[DEFENDED] = np.ascontiguousarray(x_defended, dtype=np.float32)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)
    return buf.getvalue()


def read(path: Path) -> dict[str, np.ndarray]:
    """The arrays of one examples file; a damaged one is named (one line, HBBenchError)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in FIELDS + ((DEFENDED,) if DEFENDED in z.files else ())}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise HBBenchError(f"{path} is not a readable examples file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                           "`hbbench verify` checks it against its cell's seal") from None
    if arrays["x_adv"].dtype != np.float32 or len(arrays["x_adv"]) != len(arrays["sample"]) or \
            (DEFENDED in arrays and arrays[DEFENDED].shape != arrays["x_adv"].shape):
        raise HBBenchError(f"{path} is not an examples file hbbench wrote (x_adv {arrays['x_adv'].dtype}, "
                           f"{len(arrays['x_adv'])} images for {len(arrays['sample'])} samples)")
    return arrays


def merge(paths: list[Path]) -> tuple[bytes, int] | None:
    """One file's bytes, and its image count, from the shards' files (in shard order); None when no
    shard kept any."""
    present = [p for p in paths if p.is_file()]
    parts = [read(p) for p in present]
    if len(present) == 1 and len(parts[0]["sample"]):  # one shard: its file is the cell's, as it is
        return present[0].read_bytes(), len(parts[0]["sample"])
    parts = [p for p in parts if len(p["sample"])]
    if not parts:
        return None
    fields = FIELDS + ((DEFENDED,) if all(DEFENDED in p for p in parts) else ())
    return to_bytes(*(np.concatenate([p[k] for p in parts]) for k in fields)), sum(len(p["sample"]) for p in parts)
