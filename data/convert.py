"""Convert the LLM datasets released with the LORO paper into loro's dataset format.

    python data/convert.py [RAW_FOLDER]      # default: ../shared/paper_data, beside this repository

RAW_FOLDER holds the authors' files (github.com/duongnhatthang/LlamaGym, commit 2fb45b45b8,
folder data/), unpickled from d3rlpy's MDPDataset into .npz files with the arrays
`observations`, `actions`, `rewards`, `terminals`, unchanged. This script writes
data/<env id>_<model>.npz for each of them and prints the table of data/README.md.

What changes, and why (see data/README.md):
  1. Realignment. A raw row i holds (s_{t+1}, a_t, r_t): the observation AFTER the action. Each
     action is paired here with the state it was taken in, s_t = the observation of the row
     before. The first row of an episode has no row before it: for CliffWalking (start cell 36)
     and FrozenLake (start cell 0) the start state is known, so the row is kept; for CartPole,
     MountainCar and Pendulum the reset state was never stored, so the row is dropped.
  2. terminated vs truncated. The raw `terminals` marks the last row of every episode. The episode
     ended for real (terminated) when its last observation is a terminal state: the goal or a
     hole, the cliff's goal cell, a fallen pole or a cart off the track, the flag. Anything else
     was cut by the authors' step cap (truncated).
  3. dtypes. Pendulum's torques become float32 of shape (N, 1); discrete actions become (N,).
Nothing else is touched: no row is reordered, no reward or observation changed.
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import loro  # noqa: E402  (loro.py sits one folder up)

REPOSITORY, COMMIT = "github.com/duongnhatthang/LlamaGym", "2fb45b45b8"
LICENSE = ("MIT License, Copyright (c) 2024 Rohan Pandey (the LlamaGym repository's LICENSE, "
           "inherited from KhoomeiK/LlamaGym)")
COLLECTION = dict(gymnasium="0.29.1", quantization="8-bit", temperature=0.9, top_p=0.6,
                  max_new_tokens=2000, prompting="chain of thought", random_actions_mixed_in=False)

# raw file -> (loro's environment id, short model name, model, the authors' step cap)
FILES = {
    "CliffWalking_Qwen2.5-7B-Instruct_Neps_30_20250502104658": (
        "CliffWalking-v1", "qwen2.5-7b", "Qwen2.5-7B-Instruct", 200),
    "CliffWalking_Qwen2.5-32B-Instruct_Neps_30_20250506015247": (
        "CliffWalking-v1", "qwen2.5-32b", "Qwen2.5-32B-Instruct", 200),
    "CartPole_Qwen2.5-7B-Instruct_Neps_30_20250410211529": (
        "CartPole-v0", "qwen2.5-7b", "Qwen2.5-7B-Instruct", 200),
    "CartPole_Qwen2.5-32B-Instruct_Neps_30_20250412032827": (
        "CartPole-v0", "qwen2.5-32b", "Qwen2.5-32B-Instruct", 200),
    "Pendulum_Qwen2.5-7B-Instruct_Neps_30_20250413234248": (
        "Pendulum-v1", "qwen2.5-7b", "Qwen2.5-7B-Instruct", 50),
    "Pendulum_Qwen2.5-32B-Instruct_Neps_30_20250414014508": (
        "Pendulum-v1", "qwen2.5-32b", "Qwen2.5-32B-Instruct", 50),
    "FrozenLake_Qwen2.5-7B-Instruct_Neps_30_20250430010558": (
        "FrozenLake-v1", "qwen2.5-7b", "Qwen2.5-7B-Instruct", 100),
    "FrozenLake_Qwen2.5-32B-Instruct_Neps_30_20250429223843": (
        "FrozenLake-v1", "qwen2.5-32b", "Qwen2.5-32B-Instruct", 100),
    "FrozenLake_DeepSeek-R1-Distill-Qwen-7B_Neps_30_20250502071148": (
        "FrozenLake-v1", "deepseek-r1-distill-qwen-7b", "DeepSeek-R1-Distill-Qwen-7B", 100),
    "FrozenLake_DeepSeek-R1-Distill-Qwen-14B_Neps_30_20250502084016": (
        "FrozenLake-v1", "deepseek-r1-distill-qwen-14b", "DeepSeek-R1-Distill-Qwen-14B", 100),
    "MountainCar_Qwen2.5-7B-Instruct_Neps_30_20250415095844": (
        "MountainCar-v0", "qwen2.5-7b", "Qwen2.5-7B-Instruct", 200),
    "MountainCar_Qwen2.5-32B-Instruct_Neps_30_20250413081613": (
        "MountainCar-v0", "qwen2.5-32b", "Qwen2.5-32B-Instruct", 100),
}
START = {"CliffWalking-v1": 36, "FrozenLake-v1": 0}     # the fixed start cell of the grid games


def is_terminal(env_id: str, obs) -> bool:
    """Did the episode end for real at this observation? gymnasium's own conditions."""
    if env_id == "CliffWalking-v1":
        return int(obs) == 47                                   # the goal cell
    if env_id == "FrozenLake-v1":
        return int(obs) in (5, 7, 11, 12, 15)                   # a hole or the goal
    if env_id == "CartPole-v0":
        x, _, theta, _ = obs
        return abs(x) > 2.4 or abs(theta) > 12 * 2 * np.pi / 360
    if env_id == "MountainCar-v0":
        return obs[0] >= 0.5 and obs[1] >= 0                    # the flag
    return False                                                # Pendulum never ends by itself


def reached_goal(env_id: str, obs, length: int, cap: int):
    """Did the episode succeed? None where the game has no goal state (Pendulum)."""
    if env_id in ("CliffWalking-v1", "MountainCar-v0"):
        return is_terminal(env_id, obs)
    if env_id == "FrozenLake-v1":
        return int(obs) == 15
    if env_id == "CartPole-v0":
        return length == cap and not is_terminal(env_id, obs)   # kept the pole up to the cap
    return None


def convert(raw: dict, env_id: str, cap: int) -> tuple:
    """Raw arrays -> (loro's arrays, statistics)."""
    after, rewards = raw["observations"], raw["rewards"].astype(np.float64)
    actions = raw["actions"][:, 0]
    ends = np.flatnonzero(raw["terminals"])
    starts = np.r_[0, ends[:-1] + 1]
    rows, dropped, goals = [], 0, []
    for episode, (first, last) in enumerate(zip(starts, ends)):
        goals.append(reached_goal(env_id, after[last], last - first + 1, cap))
        for i in range(first, last + 1):
            if i > first:
                s = after[i - 1]                                # the state the action was taken in
            elif env_id in START:
                s = START[env_id]
            else:
                dropped += 1                                    # the reset state was never stored
                continue
            terminated = i == last and is_terminal(env_id, after[i])
            rows.append((s, actions[i], rewards[i], after[i], terminated,
                         i == last and not terminated, episode))
    obs, a, r, next_obs, terminated, truncated, episode = zip(*rows)
    tabular = env_id in START
    arrays = dict(
        obs=np.array(obs, np.int64 if tabular else np.float32),
        actions=(np.array(a, np.float32).reshape(-1, 1) if env_id == "Pendulum-v1"
                 else np.array(a, np.int64)),
        rewards=np.array(r, np.float64), next_obs=np.array(next_obs, np.int64 if tabular else np.float32),
        terminated=np.array(terminated, bool), truncated=np.array(truncated, bool),
        episode=np.array(episode, np.int64))
    raw_returns = np.add.reduceat(rewards, starts)
    return arrays, dict(raw_rows=len(rewards), rows_dropped=dropped, episodes=len(ends),
                        raw_mean_return=float(raw_returns.mean()), goals=goals)


def main(raw_folder: str):
    print("| file | model | episodes | transitions | mean return | reach the goal | rows dropped |")
    print("|---|---|---|---|---|---|---|")
    for raw_name, (env_id, name, model, cap) in FILES.items():
        with np.load(os.path.join(raw_folder, raw_name + ".npz")) as f:
            raw = {k: f[k] for k in f.files}
        arrays, stats = convert(raw, env_id, cap)
        meta = dict(
            env_id=env_id, name=name, model=model, kind="recorded LLM",
            source=f"{model}, recorded by the LORO paper's authors",
            released_with="Duong, Yang & Zhang 2025, arXiv:2505.10861",
            origin=dict(repository=REPOSITORY, commit=COMMIT, file=f"data/{raw_name}.pkl"),
            license=LICENSE, collection=dict(COLLECTION, step_cap=cap),
            conversion=dict(script="data/convert.py", realigned="each action paired with the "
                            "state it was taken in", raw_rows=stats["raw_rows"],
                            rows_dropped=stats["rows_dropped"],
                            raw_mean_return=round(stats["raw_mean_return"], 3)),
            episodes=stats["episodes"])
        dataset = loro.Dataset(**arrays, meta=meta)
        out = os.path.join(HERE, f"{env_id}_{name}.npz")
        loro.save_dataset(dataset, out)
        loaded = loro.load_dataset(out, env_id)                 # loro's own checks must pass
        returns = loaded.episode_returns()
        goals = stats["goals"]
        share = "n/a" if goals[0] is None else f"{sum(goals)}/{len(goals)}"
        print(f"| `{os.path.basename(out)}` | {model} | {stats['episodes']} | {len(loaded):,} | "
              f"{returns.mean():,.2f} | {share} | {stats['rows_dropped']} |")


if __name__ == "__main__":
    default = os.path.join(os.path.dirname(HERE), "..", "shared", "paper_data")
    main(sys.argv[1] if len(sys.argv) > 1 else default)
