"""Benchmark: a one-profile ``l1000 read-across`` beside ``l1000 --help``, in one run.

Writes a one-profile query file (the first profile of the lake, as a CSV of the model's
978 landmark genes) from a data root that has a trained model and perturbagen embeddings
(``make demo``), then runs, each in a fresh process and alternated ``--repeats`` times:

* ``l1000 --help`` (the start-up floor of the command line);
* ``l1000 read-across query.csv --top 10`` (read, check, embed, rank, print);
* with ``--keras``, the same query on a copy of the data root whose model directory has no
  exported weights, so the command ranks through Keras/TensorFlow (the lake is linked, not
  copied);
* with ``--compare-src DIR``, both commands again from another source tree (e.g. ``git
  archive`` of an earlier commit, put first on ``PYTHONPATH``): before and after side by side.

Prints every run's wall time and the median of each, and the ratio of the query to
``--help``.

Usage: ``python benchmarks/cli.py --data-root /tmp/demo [--repeats 5] [--keras]
[--compare-src DIR]``
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

L1000 = str(Path(sys.executable).parent / "l1000")
WEIGHTS_FILES = ("embedding_weights.npz",)


def model_dir(root: Path) -> Path:
    """The served model of a data root (``models/embedding_model``, or its ``all`` split)."""
    base = root / "models" / "embedding_model"
    return base / "all" if (base / "all" / "card.json").exists() else base


def write_query(root: Path, out: Path) -> Path:
    card = json.loads((model_dir(root) / "card.json").read_text())
    first = sorted((root / "lake" / "landmark_profiles").glob("cell_id=*/*.parquet"))[0]
    row = pq.read_table(first, columns=["inst_id", "landmarks"]).slice(0, 1).to_pylist()[0]
    values = np.asarray(row["landmarks"], np.float32)
    lines = [f"gene,{row['inst_id']}"] + [
        f"{g},{v:.4f}" for g, v in zip(card["gene_order"], values)
    ]
    out.write_text("\n".join(lines) + "\n")
    return out


def keras_only_root(root: Path, tmp: Path) -> Path:
    """A data root reading ``root``'s lake, with a model directory lacking exported weights."""
    copy = tmp / "keras_root"
    copy.mkdir()
    for entry in root.iterdir():
        if entry.name != "models":
            (copy / entry.name).symlink_to(entry)
    src = model_dir(root)
    dst = copy / src.relative_to(root)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*WEIGHTS_FILES))
    return copy


def timed(cmd: list[str], src: str | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": src} if src else None
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    return dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keras", action="store_true", help="also time the Keras path")
    parser.add_argument(
        "--compare-src", default=None, help="also time both commands from this source tree"
    )
    args = parser.parse_args()
    root = args.data_root.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        query = write_query(root, tmp / "query.csv")
        commands = {
            "l1000 --help": [L1000, "--help"],
            "read-across, 1 profile": [
                L1000,
                "read-across",
                str(query),
                "--top",
                "10",
                "--data-root",
                str(root),
            ],
        }
        if args.keras:
            commands["read-across, 1 profile, Keras"] = [
                *commands["read-across, 1 profile"][:-1],
                str(keras_only_root(root, tmp)),
            ]
        runs = {name: (cmd, None) for name, cmd in commands.items()}
        if args.compare_src:
            src = str(Path(args.compare_src).resolve())
            for name in ("l1000 --help", "read-across, 1 profile"):
                runs[f"{name} [{Path(src).name}]"] = (commands[name], src)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for cmd, src in runs.values():  # warm-up: page cache, .pyc files
            timed(cmd, src)
        for _ in range(args.repeats):
            for name, (cmd, src) in runs.items():
                times[name].append(timed(cmd, src))
    print(f"CPUs: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; {args.repeats} runs")
    for name, each in times.items():
        shown = ", ".join(f"{t:.2f}" for t in each)
        print(f"{name:<44} median {statistics.median(each):6.2f} s   runs: {shown}")
    for name, each in times.items():
        if "--help" not in name:
            helps = [h for h in times if "--help" in h and h[len("l1000 --help") :] in name]
            ratio = statistics.median(each) / statistics.median(times[helps[-1]])
            print(f"{name} / its --help: {ratio:.1f}x")


if __name__ == "__main__":
    main()
