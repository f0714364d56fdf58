"""Are the curves of this loro.py identical to those of another version of it? For a refactor
that must not change a number: every method's curves (both protocols) and summaries, for a set
of short configurations that covers the three learners, both explorations and the warm start's
ingredients, each compared exactly.

    git show HEAD~3:loro.py > /tmp/old_loro.py
    python bench/identical.py /tmp/old_loro.py [--budget-scale 0.25] [--seeds 2]

A setting the other file does not know (a field added since) is left out for both.
"""
import dataclasses
import importlib.util
import os
import sys

import numpy as np

from common import PAPER_ENVS, budget, loro, main, parser

CONFIGS = [dict(env_id=env_id) for env_id in PAPER_ENVS] + [
    dict(env_id="CliffWalking-v1", prior="qwen2.5-32b"),
    dict(env_id="CliffWalking-v1", prior=loro.STAND_IN, prior_noise=0.2),
    dict(env_id="CliffWalking-v1", init_untried="pessimistic", pretrain_updates=50),
    dict(env_id="CliffWalking-v1", exploration="undirected"),
    dict(env_id="MountainCar-v0", exploration="undirected", prior_share=0.5),
    dict(env_id="CartPole-v0", alpha_scale=0.1, init_untried="keep"),
]


def load(path: str):
    """The other file as a module named other_loro, reading this checkout's data/."""
    if not os.path.isfile(path):
        raise loro.LoroError(f"{path}: no such file; write one with `git show REV:loro.py > PATH`")
    spec = importlib.util.spec_from_file_location("other_loro", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_loro"] = module           # dataclasses and worker processes look it up
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise loro.LoroError(f"{path} does not load as a loro.py ({type(error).__name__}: "
                             f"{error})") from None
    module.DATA_DIR = loro.DATA_DIR
    return module


def compare(other, settings: dict, seeds: int, scale: float) -> str:
    """'identical', or where the two files' results first differ."""
    known = {f.name for f in dataclasses.fields(other.Config)}
    if not set(settings) <= known:
        return f"skipped: {other.__name__} has no {', '.join(sorted(set(settings) - known))}"
    runs = []
    for module in (loro, other):
        cfg = module.Config(seeds=seeds, jobs=2, budget_steps=budget(settings["env_id"], scale),
                            **settings)
        runs.append(module.run_experiment(cfg, log=loro.QUIET)["methods"])
    for method, mine in runs[0].items():
        for key, values in mine.items():
            if key != "seconds" and not np.array_equal(np.array(values, dtype=float),
                                                       np.array(runs[1][method][key], dtype=float),
                                                       equal_nan=True):
                return f"DIFFERENT: {method} {key}"
    return "identical"


def work(args) -> dict:
    other, report = load(args.other), {}
    for settings in CONFIGS:
        label = ", ".join(f"{k}={v}" for k, v in settings.items())
        report[label] = compare(other, settings, args.seeds, args.budget_scale)
        print(f"{label}: {report[label]}")
    if any(v.startswith("DIFFERENT") for v in report.values()):
        raise loro.LoroError(f"the curves differ from {args.other}'s")
    return report


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0], seeds=2)
    p.set_defaults(budget_scale=0.25)
    p.add_argument("other", help="another version of loro.py")
    main(p, work)
