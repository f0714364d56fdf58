"""Variants of the shipped CliffWalking data that stand for the other collections the paper's
authors released: each episode cut at 100 steps (marked truncated), as some of their
collections were; and each episode's first row dropped, as a converter that cannot recover the
reset state must do (the raw release stores the state after each action). Nothing is tuned to
them: they test that the warm start holds on data it was not designed on.

    python bench/variants.py --out DIR        # writes DIR/<env>_<model>_<variant>.npz
"""
import os

import numpy as np

from common import loro, main, parser

VARIANTS = ("cut at 100 steps", "first row dropped")


def cut_episodes(d: loro.Dataset, steps: int = 100) -> loro.Dataset:
    """Each episode's first `steps` rows; an episode cut there ends truncated, not terminated."""
    first = np.r_[True, d.episode[1:] != d.episode[:-1]]
    position = np.arange(len(d)) - np.maximum.accumulate(np.where(first, np.arange(len(d)), 0))
    keep = position < steps
    out = loro.Dataset(*(getattr(d, k)[keep] for k in loro.DATASET_KEYS), meta=dict(d.meta))
    last = np.r_[out.episode[1:] != out.episode[:-1], True]
    out.truncated = out.truncated | (last & ~out.terminated)
    return out


def drop_first_rows(d: loro.Dataset) -> loro.Dataset:
    """Each episode without its first row (the reset state unknown); one-row episodes vanish."""
    keep = np.r_[False, d.episode[1:] == d.episode[:-1]]
    return loro.Dataset(*(getattr(d, k)[keep] for k in loro.DATASET_KEYS), meta=dict(d.meta))


def write_variants(folder: str, env_id: str = "CliffWalking-v1") -> dict:
    """Every variant of every shipped dataset of `env_id`: {"model, variant": path}."""
    paths = {}
    for model, path in loro.shipped_datasets(env_id).items():
        d = loro.load_dataset(path)
        for name, make in zip(VARIANTS, (cut_episodes, drop_first_rows)):
            v = make(d)
            v.meta["source"] = f"{d.meta.get('source')}, {name} (bench/variants.py)"
            out = os.path.join(folder, f"{env_id}_{model}_{name.replace(' ', '-')}.npz")
            loro.save_dataset(v, out)
            loro.load_dataset(out, env_id)       # the file passes every check of a dataset
            paths[f"{model}, {name}"] = out
    return paths


def work(args) -> dict:
    if not os.path.isdir(args.out):
        raise loro.LoroError(f"--out {args.out}: no such folder; create it first")
    paths = write_variants(args.out)
    for label, path in paths.items():
        d = loro.load_dataset(path)
        print(f"{label}: {path}, {len(d)} rows, {len(np.unique(d.episode))} episodes, "
              f"{int(d.terminated.sum())} reach the goal")
    return paths


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the folder to write the variants into")
    main(p, work)
