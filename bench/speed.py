"""Learner speed: environment steps per second while learning (the online loop of loro's §6:
act, step, store, update; no evaluation episodes) against raw env.step with actions drawn
beforehand, in the same process. Raw speed is measured before and after each learner and
averaged (a machine's speed drifts); each figure is the median over --seeds repeats.

    python bench/speed.py [--seeds 3] [--budget-scale 1] [--json speed.json]
"""
import time

import numpy as np

from common import loro, main, parser

STEPS = 20_000                                   # per measurement, at --budget-scale 1


def raw_steps_per_second(env_id: str, steps: int, seed: int = 0) -> float:
    """env.step alone, with actions drawn beforehand: the speed limit of any learner."""
    env = loro.make_env(env_id)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=seed)
    started = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - started)


def learning_steps_per_second(env_id: str, steps: int, seed: int = 0) -> float:
    """loro's online loop for `rl`, with no curve points (so no evaluation episodes)."""
    cfg = loro.Config(env_id=env_id, budget_steps=steps, eval_every=steps + 1).resolved()
    started = time.perf_counter()
    loro.learn_online("rl", cfg, loro.env_spec(env_id), seed, None, np.zeros(0))
    return steps / (time.perf_counter() - started)


def run(repeats: int, steps: int, log=print) -> list:
    rows = []
    for env_id, spec in loro.ENVS.items():
        raws, learnings = [], []
        for seed in range(repeats):
            before = raw_steps_per_second(env_id, steps, seed)
            learnings.append(learning_steps_per_second(env_id, steps, seed))
            raws.append((before + raw_steps_per_second(env_id, steps, seed)) / 2)
        raw, learning = float(np.median(raws)), float(np.median(learnings))
        rows.append(dict(env=env_id, learner=spec.learner, raw=raw, learning=learning,
                         ratio=learning / raw))
        log(f"  {env_id} done")
    return rows


def table(rows: list) -> str:
    lines = ["| environment | learner | raw steps/s | learning steps/s | ratio |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['env']} | {r['learner']} | {r['raw']:,.0f} | {r['learning']:,.0f} | "
                     f"{r['ratio']:.2f} |")
    return "\n".join(lines)


def work(args) -> list:
    rows = run(args.seeds, max(100, round(STEPS * args.budget_scale)))
    print(table(rows))
    return rows


if __name__ == "__main__":
    main(parser(__doc__.split("\n\n")[0], seeds=3), work)
