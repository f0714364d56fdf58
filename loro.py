"""loro.py: warm-starting reinforcement learning with data collected by an LLM, in one file.

LORO is the method of Duong, Yang & Zhang, "Improving the Data-efficiency of Reinforcement
Learning by Warm-starting with LLM" (2025, arXiv:2505.10861). A language model is a weak
policy for a control task, but the states it visits may cover much of what a good policy
visits. LORO tries to turn that coverage into sample efficiency:

    1. LLM rollouts     an LLM plays a few episodes; its transitions form an off-policy dataset
    2. pre-training     an off-policy learner is trained on that dataset alone (offline)
    3. fine-tuning      the learner explores online, keeping the LLM data in its replay buffer
    4. same budget      the LLM's steps count against the same environment-step budget as the
                        baselines: pure RL, the LLM alone, a naive mix, and a random policy

Run it: `python loro.py` (the paper's experiment on the paper's own LLM data), `python loro.py
run --env CartPole-v0` (the same comparison on any environment), `python loro.py --help`.
The prior is, by default, the LLM data the paper's authors released (Qwen2.5-7B-Instruct,
data/). Elsewhere a *scripted stand-in* plays it: a few rules of thumb per game that answer the
same chat messages an LLM gets. It is not a language model and is labelled as such everywhere.

Sections (the notebook tutorial.ipynb uses the same numbers). §0-§8 tell the method's story in
the order the data flows; a first reading can stop at §8. The appendices are machinery.
    §0  Settings                    one dataclass of settings
    §1  The environments in words   the registry: budgets, thresholds, the text an LLM reads
    §2  The LLM as a policy         prompt, reply, parse, vote
    §3  The dataset                 a row, one episode, the shipped LLM data
    §4  Learners                    tabular Q, tile coding + linear Q, actor-critic; exploring
    §5  The warm start              untried actions, offline updates, the prior's share
    §6  The same-budget experiment  the five methods, two curves, the metrics
    §7  Diagnostics                 value iteration, coverage of the optimal policy
    §8  Plots                       figures, returned to the caller
    A   The stand-in                rules of thumb behind the chat interface (not an LLM)
    B   The HTTP client             retries, deadlines, error explanations
    C   Collection and files        parallel episodes, a transcript to resume from, file checks
    D   The command line            run, collect, prompt, coverage; the main job
    E   Neural networks             an MLP with hand-written gradients, and Adam (§4's TD3)
The lesson reaches the machinery through two seams: a chat's .chat(messages) (A's stand-in or
B's ChatClient) and make_priors() (C), which cuts each seed's prior from a recorded file or
collects it, playing §3's play_episode many times. The benchmarks that rebuild the published
tables are in bench/.

References: Sutton & Barto, Reinforcement Learning: An Introduction, 2nd ed. (2018), cited as
"S&B"; the learners' own papers are cited where their ideas are implemented.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import datetime
import email.utils
import functools
import json
import math
import os
import random as pyrandom
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # before numpy: tiny matrices, threads hurt
import gymnasium as gym
import numpy as np
import requests
import urllib3                                   # requests' own transport (its errors, read1)

METHODS = ("rl", "llm", "mix", "loro", "random")


class LoroError(Exception):
    """A bad input or a failed step, explained in one line that names the fix."""


def QUIET(*_):
    """A log that says nothing: pass log=QUIET to silence a function's progress lines."""


# --- §0 Settings ---------------------------------------------------------------------------------

@dataclass
class Config:
    """Every setting of a run. None means "the default": the environment's budget (§1); for the
    prior, the shipped Qwen2.5-7B data (data/) where there is some, else the stand-in (§2).
    cfg.resolved() fills the defaults in, cfg.check() refuses settings that cannot work."""
    env_id: str = "CliffWalking-v1"      # the main job's environment: the paper's headline
    methods: tuple = METHODS             # which of rl, llm, mix, loro, random to run
    seeds: int = 5                       # runs per method, each with its own random streams
    seed: int = 0                        # first seed; run i uses seed + i
    budget_steps: int | None = None      # environment steps per run, the prior's included
    eval_every: int = 200                # a point on the curve every K steps (the paper's chunk)
    eval_episodes: int | None = None     # greedy episodes per point (more for stochastic games)
    # the prior (step 1 of LORO)
    prior_episodes: int = 10             # episodes the prior plays; 10 in the paper's main figure
    prior: str | None = None             # a shipped dataset's model name (data/), or "scripted"
    prior_noise: float | None = None     # the stand-in's chance of a random answer (None: 0.2)
    dataset: str | None = None           # a recorded .npz to use instead
    prompt_mode: str = "direct"          # direct | cot (think step by step) | vote (majority), §2
    votes: int = 5                       # samples per step in vote mode
    # the warm start (steps 2 and 3): three ingredients, each can be switched off (§5)
    init_untried: str = "calibrated"     # where untried actions start (UNTRIED, §5)
    pretrain_updates: int | None = None  # offline updates (None: the learner's own replay ratio)
    prior_share: float | None = None     # the prior's share of a minibatch (None: on top)
    # the learner (§4)
    exploration: str = "optimistic"      # how the Q-learners explore (EXPLORATIONS, §4)
    alpha_scale: float = 1.0             # multiplies the learner's step size (< 1: slower)
    jobs: int = 1                        # runs in parallel processes (one per core is plenty)
    # Appendices B and C: the HTTP client to a live language model, used when `model` is set
    base_url: str | None = None          # e.g. http://localhost:11434/v1 (Ollama), :8000/v1 (vLLM)
    model: str | None = None             # model name as the server knows it
    api_key: str | None = None           # falls back to $OPENAI_API_KEY; never written anywhere
    temperature: float = 0.0             # always sent: servers' defaults differ
    max_tokens: int = 256                # room for a short chain of thought
    llm_seed: int | None = 0             # sent as `seed`; some servers ignore it
    timeout: float = 60.0                # seconds for a whole call: connect, send, the full reply
    retries: int = 4                     # retries of a failed call (429, 500, 503, a timeout...)
    workers: int = 1                     # episodes collected at once (one HTTP session each)

    def resolved(self) -> Config:
        return resolve(self)             # Appendix C: the budget and the prior, looked up

    def check(self) -> Config:
        return check_config(self)        # Appendix D: one line that names the fix


# --- §1 The environments in words ----------------------------------------------------------------
# One registry entry per environment: how to make it, which learner solves it, the paper's
# budget, the score that counts as solved, and the words an LLM reads (game, goal, actions,
# observation). The prompts of §2 and the stand-in's rules are built from these words only.

@dataclass
class EnvSpec:
    env_id: str
    learner: str                 # "tabular" | "linear" | "actor_critic" (§4)
    max_steps: int               # episode step cap (CliffWalking has none in gymnasium: 200)
    budget_steps: int            # default environment-step budget of one run
    threshold: float             # a return that counts as solving the task
    eval_episodes: int           # greedy episodes per curve point (more where outcomes are random)
    gamma: float                 # discount factor
    worst_reward: float          # the lowest reward of one step (the undirected Q start, §4)
    game: str                    # what the game is, for the system prompt
    goal: str                    # what counts as doing well
    actions: list                # [(words, keywords)] per action; [] for continuous actions
    describe: Callable           # observation -> words for the user prompt
    hyper: dict = field(default_factory=dict)   # the learner's hyperparameters (§4)
    epsilon: tuple | None = None                # exploration: (start, end, decay steps), linear
    batch_size: int = 32                        # transitions per update
    learning_starts: int = 0                    # no update before the buffer holds this many
    update_every: int = 1                       # environment steps per update (256 rows every 8
    # steps feed a learner as much as 32 every step; NumPy's fixed cost per call makes it faster)
    continuous_range: tuple | None = None       # (low, high) torque for continuous actions


def _fmt(x) -> str:
    return f"{float(x):+.3f}"


def describe_cartpole(obs) -> str:
    x, v, theta, omega = obs
    return (f"Cart position {_fmt(x)} m, cart velocity {_fmt(v)} m/s, "
            f"pole angle {_fmt(theta)} rad (positive: leaning right), "
            f"pole angular velocity {_fmt(omega)} rad/s (positive: falling to the right).")


def describe_mountain_car(obs) -> str:
    position, velocity = obs
    return f"Car position {_fmt(position)}, velocity {velocity:+.4f} (positive: moving right)."


def describe_pendulum(obs) -> str:
    c, s, w = obs
    return (f"Angle from upright {_fmt(math.atan2(s, c))} rad (cos {_fmt(c)}, sin {_fmt(s)}), "
            f"angular velocity {_fmt(w)} rad/s.")


def describe_cell(obs, n_cols: int) -> str:
    row, col = divmod(int(obs), n_cols)
    return f"You are at row {row}, column {col}."


def describe_grid(n_cols: int) -> Callable:
    """A grid game's describe: a partial, not a closure, so that it pickles to worker processes."""
    return functools.partial(describe_cell, n_cols=n_cols)


FROZEN_LAKE_MAP = ["SFFF", "FHFH", "FFFH", "HFFG"]   # gymnasium's default 4x4 map
CLIFF_MAP = ["." * 12, "." * 12, "." * 12, "S" + "C" * 10 + "G"]

ENVS = {
    "CliffWalking-v1": EnvSpec(
        "CliffWalking-v1", learner="tabular", max_steps=200, budget_steps=40_000,
        threshold=-13.0, eval_episodes=1, gamma=1.0, worst_reward=-100.0,
        game=("CliffWalking: a 4 x 12 grid. Rows are numbered 0 to 3 from top to bottom, columns "
              "0 to 11 from left to right. You start at row 3, column 0. The goal is at row 3, "
              "column 11. Between them, row 3 columns 1 to 10 are a cliff. Map (S start, "
              "C cliff, G goal):\n" + "\n".join(CLIFF_MAP)),
        goal=("Reach the goal in as few moves as possible. Every move costs -1; stepping into the "
              "cliff costs -100 and sends you back to the start. Walking into the edge of the grid "
              "leaves you where you are."),
        actions=[("move up", ["up", "north"]), ("move right", ["right", "east"]),
                 ("move down", ["down", "south"]), ("move left", ["left", "west"])],
        describe=describe_grid(12),
        hyper=dict(alpha=0.5), epsilon=(0.1, 0.1, 1), update_every=8, batch_size=256),
    "FrozenLake-v1": EnvSpec(
        "FrozenLake-v1", learner="tabular", max_steps=100, budget_steps=30_000,
        threshold=0.6, eval_episodes=20, gamma=0.99, worst_reward=0.0,
        game=("FrozenLake: a 4 x 4 frozen lake. Rows are numbered 0 to 3 from top to bottom, "
              "columns 0 to 3 from left to right. Map (S start, F frozen, H hole, G goal):\n"
              + "\n".join(FROZEN_LAKE_MAP) + "\nThe ice is slippery: you move in the chosen "
              "direction only one time in three; otherwise you slide to one of the two "
              "perpendicular directions."),
        goal=("Reach the goal G without falling into a hole H. Reaching the goal gives +1 and "
              "ends the episode; falling into a hole ends it with 0. At most 100 moves."),
        actions=[("move left", ["left", "west"]), ("move down", ["down", "south"]),
                 ("move right", ["right", "east"]), ("move up", ["up", "north"])],
        describe=describe_grid(4),
        hyper=dict(alpha=0.1), epsilon=(1.0, 0.1, 10_000), update_every=8, batch_size=256),
    "CartPole-v0": EnvSpec(      # the paper's version: episodes of at most 200 steps
        "CartPole-v0", learner="linear", max_steps=200, budget_steps=30_000,
        threshold=195.0, eval_episodes=1, gamma=0.99, worst_reward=1.0,
        game="CartPole: a pole is hinged on a cart that moves along a frictionless track.",
        goal=("Keep the pole upright: you earn +1 for every step it stays up. The episode ends "
              "when the pole leans more than 12 degrees or the cart leaves the track "
              "(|position| > 2.4)."),
        actions=[("push the cart to the left", ["left"]),
                 ("push the cart to the right", ["right"])],
        describe=describe_cartpole,
        # The tiles span the track (+-2.4), the failure angle (+-0.21 rad = 12 degrees) and the
        # velocities seen in practice (gymnasium leaves them unbounded); faster values are clipped.
        hyper=dict(low=[-2.4, -3.0, -0.21, -3.5], high=[2.4, 3.0, 0.21, 3.5], n_tilings=8,
                   n_bins=8, alpha=0.3),
        epsilon=(1.0, 0.01, 2_000), learning_starts=256, update_every=4, batch_size=128),
    "MountainCar-v0": EnvSpec(
        "MountainCar-v0", learner="linear", max_steps=200, budget_steps=60_000,
        threshold=-110.0, eval_episodes=1, gamma=0.99, worst_reward=-1.0,
        game=("MountainCar: a car sits in a valley between two hills, on a track from position "
              "-1.2 to +0.6; the valley bottom is near -0.52. Its engine is too weak to drive "
              "straight up the right hill."),
        goal=("Reach the flag on top of the right hill (position >= 0.5) as fast as possible. "
              "Every step costs -1; the episode ends at the flag or after 200 steps. Rocking back "
              "and forth builds up speed."),
        actions=[("accelerate to the left", ["left"]),
                 ("do not accelerate", ["not accelerate", "coast", "coasting", "nothing"]),
                 ("accelerate to the right", ["right"])],
        describe=describe_mountain_car,
        hyper=dict(low=[-1.2, -0.07], high=[0.6, 0.07], n_tilings=8, n_bins=8, alpha=0.3),
        epsilon=(0.0, 0.0, 1), learning_starts=256, update_every=4, batch_size=128),
    "Pendulum-v1": EnvSpec(
        "Pendulum-v1", learner="actor_critic", max_steps=200, budget_steps=40_000,
        threshold=-200.0, eval_episodes=1, gamma=0.99, worst_reward=-16.2736,
        game=("Pendulum: a pendulum hangs from a frictionless pivot and starts at a random angle. "
              "Angle 0 is upright; positive torque turns it toward positive angles."),
        goal=("Swing the pendulum up and keep it upright with little effort. Each step costs "
              "angle^2 + 0.1 * velocity^2 + 0.001 * torque^2; episodes last 200 steps."),
        actions=[], continuous_range=(-2.0, 2.0),
        describe=describe_pendulum, batch_size=64, learning_starts=1000,
        hyper=dict(hidden=(32, 32), lr=1e-3, tau=0.005, policy_delay=2, policy_noise=0.2,
                   noise_clip=0.5, exploration_noise=0.1, offline_bc_weight=0.4)),
}


def env_spec(env_id: str) -> EnvSpec:
    if env_id not in ENVS:
        raise LoroError(f"unknown environment {env_id!r}; choose one of: {', '.join(ENVS)}")
    return ENVS[env_id]


def make_env(env_id: str) -> gym.Env:
    """The gymnasium environment with the registry's step cap (CliffWalking gets 200)."""
    spec = env_spec(env_id)
    with warnings.catch_warnings():   # CartPole-v0 is deprecated in gymnasium; the paper used it
        warnings.simplefilter("ignore")
        return gym.make(env_id, max_episode_steps=spec.max_steps)


# --- §2 The LLM as a policy ----------------------------------------------------------------------
# Step 1 of LORO: at every step the model reads the game, the goal, the legal actions and the
# observation in words, and answers with an action, numbered from 1 in the prompt (models favour
# 0 whatever it means) and mapped back to gymnasium's 0-based ones. A "chat" is anything with
# .chat(messages, sample) -> a Reply with its .text and .finish_reason ("length": cut short): a
# real model behind the HTTP client of Appendix B, or Appendix A's stand-in (rules of thumb, NOT
# a language model; `noise` dials it from good, 0, to useless, 1). During a collection each
# episode talks through its own EpisodeChat (Appendix C), which also records what was said.

ANSWER_FORMATS = {
    "direct": "Answer with one line of the form 'Action: N' and nothing else.",
    "cot": "Think step by step about what the observation means for the goal, then end your "
           "reply with a last line of the form 'Action: N'.",
    "vote": "Answer with one line of the form 'Action: N' and nothing else.",
}
PROMPT_MODES = tuple(ANSWER_FORMATS)


def system_prompt(spec: EnvSpec, mode: str = "direct") -> str:
    if spec.continuous_range:
        low, high = spec.continuous_range
        legal = f"The action is a torque, a number between {low:.1f} and {high:.1f}."
        answer = ANSWER_FORMATS[mode].replace("'Action: N'", "'Action: X' where X is the torque")
    else:
        n = len(spec.actions)
        legal = "Legal actions:\n" + "\n".join(
            f"{i + 1}: {words}" for i, (words, _) in enumerate(spec.actions))
        answer = f"{ANSWER_FORMATS[mode]} N is the number of your action (1 to {n})."
    return (f"You are playing a game from the Gymnasium library of control tasks.\n"
            f"Game: {spec.game}\nGoal: {spec.goal}\n{legal}\n{answer}")


def build_messages(spec: EnvSpec, obs, mode: str = "direct") -> list:
    """The chat messages for one step: the system message, then the observation and a reminder of
    the answer format (models, small ones especially, follow the last instruction they read)."""
    reminder = ("Think step by step, then end with one line: Action: N" if mode == "cot" else
                "Answer with one line: Action: N")
    if spec.continuous_range:
        reminder = reminder.replace("Action: N", "Action: X, where X is the torque")
    return [{"role": "system", "content": system_prompt(spec, mode)},
            {"role": "user", "content": f"Observation: {spec.describe(obs)}\n"
                                        f"Which action do you choose? {reminder}"}]


# Parsing a reply. Real replies are messy: a chain of thought full of numbers, "Action: 0", a
# refusal, a reasoning model's <think> block, nothing at all. The rules, in order, with a CartPole
# reply each (1: push left, 2: push right); the first that yields a legal action wins, and its
# name is counted, so a run reports how often it guessed:
#   tag       "The pole leans right, so I push right.\nAction: 2" or "**Action:** 2"   -> push right
#   number    "The angle is 0.05, so option 2": the last number that names an action  -> push right
#   keyword   "Action: 0. Push left, option 1": an illegal tag; the last action word  -> push left
#   fallback  "I cannot help with that.", or no text at all: a random legal action
# Before any rule, "<think>1 or 2?</think>" is dropped and a Unicode minus ("−1.5") made ASCII.
PARSE_RULES = ("tag", "number", "keyword", "fallback")
_THINK = re.compile(r"^.*?</think>|<think>.*?(?:</think>|$)", re.S | re.I)  # also a lone </think>
_NUMBER_TEXT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?"           # 2, -1.5, .5, 1e-3
_TAG = re.compile(rf"\baction\s*\**\s*[:=]\s*\**\s*\(?\s*({_NUMBER_TEXT})", re.I)  # Action = (2
_NUMBER = re.compile(_NUMBER_TEXT, re.I)
_DASH = re.compile(r"[\u2010-\u2015\u2212\ufe63\uff0d](?=\.?\d)")      # dashes before a number


def parse_action(spec: EnvSpec, reply: str | None, rng: np.random.Generator):
    """Reply text -> (gymnasium action, rule used). Never fails: the last rule is a random one."""
    text = _DASH.sub("-", _THINK.sub(" ", reply or ""))   # "−1.5" (a Unicode minus) is -1.5
    tags, numbers = _TAG.findall(text), _NUMBER.findall(text)
    if spec.continuous_range:                    # a torque: the tag, else the last number, clamped
        low, high = spec.continuous_range
        for rule, found in (("tag", tags), ("number", numbers)):
            if found:
                return np.array([np.clip(float(found[-1]), low, high)], dtype=np.float32), rule
        return np.array([rng.uniform(low, high)], dtype=np.float32), "fallback"
    n = len(spec.actions)
    # The last tag if there is one, else the last number that names a legal action. A tag that
    # names an illegal one ("Action: 0", "Action: 7") is not rescued by other numbers of the
    # reply (those are usually the observation read back): the words are tried next.
    candidates, rule = (tags[-1:], "tag") if tags else (reversed(numbers), "number")
    for token in candidates:
        value = float(token)
        if value.is_integer() and 1 <= value <= n:
            return int(value) - 1, rule
    last_seen, action = -1, None                 # the action whose keyword appears last
    for a, (_, keywords) in enumerate(spec.actions):
        for word in keywords:
            for match in re.finditer(rf"\b{re.escape(word)}\b", text, re.I):
                if match.start() > last_seen:
                    last_seen, action = match.start(), a
    if action is not None:
        return action, "keyword"
    return int(rng.integers(n)), "fallback"


def ask_policy(spec: EnvSpec, chat, obs, rng: np.random.Generator, mode: str = "direct",
               votes: int = 1) -> tuple:
    """One step of the LLM policy: prompt, k replies, parse each, majority vote -> (action, rule).
    A reply cut at max_tokens or with no content is not parsed; with no usable reply the step
    falls back to a random action."""
    messages = build_messages(spec, obs, mode)
    replies = [chat.chat(messages, i) for i in range(votes if mode == "vote" else 1)]
    usable = [r.text for r in replies if r.text and r.finish_reason != "length"]
    parsed = [parse_action(spec, text, rng) for text in usable]
    parsed = [(action, rule) for action, rule in parsed if rule != "fallback"]
    if not parsed:
        return parse_action(spec, None, rng)
    if spec.continuous_range:                    # a vote over torques: their median
        return np.median([a for a, _ in parsed], axis=0), parsed[0][1]
    votes_for = collections.Counter(a for a, _ in parsed)   # most_common is stable: a tie goes
    action = votes_for.most_common(1)[0][0]                 # to the earliest vote
    return action, next(r for a, r in parsed if a == action)


# --- §3 The dataset ------------------------------------------------------------------------------
# A row is (s_t, a_t, r_t, s_{t+1}, terminated, truncated): the state paired with an action is
# the one the policy saw BEFORE acting (easy to get wrong: the paper's released code pairs the
# action with the state after it). `terminated` means a real end (goal, hole, fall): no value
# after it. `truncated` means the clock ran out: the next state still has a value (§4).
# play_episode rolls out one episode; Appendix C collects, writes and checks many (collect,
# save_dataset, load_dataset). data/ ships the paper's own LLM data (data/README.md).

DATASET_KEYS = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "episode")


@dataclass
class Dataset:
    """One row per step. The rows of an episode are consecutive and in time order: the methods
    below rely on it, and check_dataset (Appendix C) refuses a file where they are not."""
    obs: np.ndarray           # (N,) int64 for grid games, (N, obs_dim) float32 otherwise
    actions: np.ndarray       # (N,) int64, or (N, 1) float32 for a torque
    rewards: np.ndarray       # (N,) float64
    next_obs: np.ndarray      # like obs
    terminated: np.ndarray    # (N,) bool
    truncated: np.ndarray     # (N,) bool
    episode: np.ndarray       # (N,) int64: which episode each row belongs to
    meta: dict                # env id, source, prompt settings, parse counts, creation time

    def __len__(self) -> int:
        return len(self.rewards)

    def episode_returns(self) -> np.ndarray:
        _, first = np.unique(self.episode, return_index=True)
        return np.add.reduceat(self.rewards, np.sort(first)) if len(self) else np.zeros(0)

    def returns_to_go(self, gamma: float) -> np.ndarray:
        """G_t = r_t + gamma * G_{t+1} within each episode, G = 0 after its last row (S&B eq. 3.9).
        A truncated episode's future is unknown, so its G counts only the rows recorded."""
        g, future = np.zeros(len(self)), 0.0
        last = np.r_[self.episode[1:] != self.episode[:-1], True]
        for i in range(len(self) - 1, -1, -1):
            future = self.rewards[i] + gamma * (0.0 if last[i] else future)
            g[i] = future
        return g

    def censored(self) -> np.ndarray:
        """Per row: True if the clock cut its episode (its last row is `truncated`), so that its
        return-to-go G is censored."""
        _, episode, length = np.unique(self.episode, return_inverse=True, return_counts=True)
        return self.truncated[np.cumsum(length) - 1][episode]   # each episode's last row's flag

    def select_episodes(self, positions) -> Dataset:
        """The episodes at these positions (0: the first), in this order, renumbered 0, 1, ..."""
        ids = np.unique(self.episode)
        rows = [np.flatnonzero(self.episode == ids[p]) for p in positions]
        keep = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        episode = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
        return Dataset(*(getattr(self, k)[keep] for k in DATASET_KEYS[:-1]), episode,
                       meta=dict(self.meta))


# Every random stream of a run has its own key, so no two streams share a seed (the prior's
# episode 2 must not replay the learner's training environment).
STREAMS = ("prior episode", "prior parser", "stand-in", "learner", "evaluation",
           "training env", "evaluation env", "random policy")


def stream_seed(seed: int, stream: str, index: int = 0) -> int:
    """The seed of one named stream of run `seed` (and of its `index`-th member: an episode)."""
    return int(np.random.SeedSequence([seed, STREAMS.index(stream), index]).generate_state(1)[0])


def play_episode(spec: EnvSpec, chat, episode: int, seed: int, mode: str = "direct",
                 votes: int = 1) -> dict:
    """Roll out one episode of the LLM (or stand-in) policy: its rows, and the parse rule of each
    step. Its start and its parser's random fallbacks have seeds of their own: it replays alone."""
    env = make_env(spec.env_id)
    rng = np.random.default_rng(stream_seed(seed, "prior parser", episode))
    obs, _ = env.reset(seed=stream_seed(seed, "prior episode", episode))
    rows, rules = [], []
    while True:
        action, rule = ask_policy(spec, chat, obs, rng, mode, votes)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, reward, next_obs, terminated, truncated))
        rules.append(rule)
        obs = next_obs
        if terminated or truncated:
            return dict(episode=episode, rows=rows, rules=rules)


# --- §4 Learners ---------------------------------------------------------------------------------
# Three off-policy learners from scratch, simplest first. They share method names, not a base
# class:  act(obs, rng, greedy=False) -> action   and   update(s, a, r, s2, terminated) -> float,
# where the update takes a minibatch (arrays, batch first) from a replay buffer (§5).
# Every target bootstraps through a time-limit cut: only `terminated` zeroes the next value.
# (A truncated episode did not end; its last state still has a future. Easy to overlook.)

def epsilon_at(schedule: tuple, step: int) -> float:
    """Exploration rate at a step of the budget: linear from `start` to `end` over `decay` steps."""
    start, end, decay = schedule
    return start + min(1.0, step / max(1, decay)) * (end - start)


def greedy_with_ties(q: np.ndarray, rng: np.random.Generator) -> int:
    """argmax, ties broken at random: with equal initial values np.argmax would always pick 0."""
    best = np.flatnonzero(q == q.max())
    return int(best[0]) if len(best) == 1 else int(rng.choice(best))


class TabularQ:
    """Q-learning with a table (S&B §6.5, eq. 6.8), fed minibatches from a replay buffer:

        Q(s, a) <- Q(s, a) + alpha * [r + gamma * max_a' Q(s', a') - Q(s, a)]

    Q starts at `start`: 0, optimistic where steps cost -1, or below every return (the two ways
    to explore, below make_learner's EXPLORATIONS).
    """

    def __init__(self, n_states: int, n_actions: int, alpha: float, gamma: float,
                 start: float = 0.0):
        self.q = np.full((n_states, n_actions), float(start))
        self.alpha, self.gamma, self.epsilon = alpha, gamma, 0.0

    def act(self, obs, rng: np.random.Generator, greedy: bool = False) -> int:
        if not greedy and rng.random() < self.epsilon:
            return int(rng.integers(self.q.shape[1]))
        return greedy_with_ties(self.q[obs], rng)

    def update(self, s, a, r, s2, terminated) -> float:
        target = r + self.gamma * np.where(terminated, 0.0, self.q[s2].max(axis=1))
        delta = target - self.q[s, a]
        # A minibatch may hold the same (s, a) several times: apply the mean of their TD errors
        # once (summing them would overshoot the target when alpha * count > 1).
        cell = s * self.q.shape[1] + a
        total = np.bincount(cell, delta, minlength=self.q.size)
        count = np.bincount(cell, minlength=self.q.size)
        self.q.flat += self.alpha * total / np.maximum(count, 1)
        return float(np.abs(delta).mean())

    def set_untried(self, s, a, value: np.ndarray):
        """Before offline pre-training (§5): in every state the data visits, the actions it never
        tried there start at the mean of `value` over that state's rows (value[i]: row i's). A NaN
        is no value: a state with nothing else keeps its start."""
        n_states, known = self.q.shape[0], np.isfinite(value)
        tried = np.zeros(self.q.shape, bool)
        tried[s, a] = True
        count = np.bincount(s[known], minlength=n_states)
        mean = np.bincount(s[known], value[known], minlength=n_states) / np.maximum(count, 1)
        untried = (count > 0)[:, None] & ~tried
        self.q[untried] = np.broadcast_to(mean[:, None], self.q.shape)[untried]


class TileCoder:
    """Tile coding (S&B §9.5.4): `n_tilings` grids over the box [low, high], each displaced by
    a fraction of a tile; a state activates exactly one tile per tiling.

    Tiling t is shifted by (t * d_i mod T) / T of a tile width in dimension i, with the
    asymmetric displacement d = (1, 3, 5, ...) that S&B recommend (uniform shifts would line the
    tilings up along the diagonal). A shifted grid needs one extra tile per dimension to cover
    the box, so dimension i has n_bins_i + 1 tiles. Values outside [low, high] are clipped.
    Worked example: 2 dimensions with 2 bins each give 3 x 3 = 9 tiles per tiling; the tile at
    coordinates (2, 1) of tiling 1 is feature 1 * 9 + 2 + 1 * 3 = 14 (the first dimension runs
    fastest).
    """

    def __init__(self, low, high, n_tilings: int = 8, n_bins=8):
        self.low, self.high = np.asarray(low, float), np.asarray(high, float)
        n_bins = np.broadcast_to(np.asarray(n_bins), self.low.shape)
        self.tiles_per_unit = n_bins / (self.high - self.low)            # (dims,)
        displacement = 2 * np.arange(len(self.low)) + 1                  # 1, 3, 5, ...
        self.offsets = (np.arange(n_tilings)[:, None] * displacement % n_tilings) / n_tilings
        sides = n_bins + 1                                                # tiles per dimension
        self.strides = np.cumprod(np.r_[1, sides[:-1]]).astype(float)    # 1, side_0, side_0 side_1
        self.n_tilings, self.tiles_per_tiling = n_tilings, int(np.prod(sides))
        self.tiling_start = np.arange(n_tilings) * self.tiles_per_tiling  # tiling t: its own block
        self.n_features = n_tilings * self.tiles_per_tiling

    def __call__(self, obs) -> np.ndarray:
        """Active tile indices: shape (n_tilings,) for one state, (B, n_tilings) for a batch."""
        x = np.asarray(obs, dtype=float)                         # clipped into the box, in tiles:
        x = (np.minimum(np.maximum(x, self.low), self.high) - self.low) * self.tiles_per_unit
        coords = np.floor(x[..., None, :] + self.offsets)        # (..., T, dims), whole numbers
        # the tile's number in its tiling, coords . strides, as a float product (fast) made int
        return (coords @ self.strides).astype(np.int64) + self.tiling_start     # (..., T)


class LinearQ:
    """Linear Q-learning on tile-coded features: Q(s, a) = sum of w[a, i] over the active tiles i.

    Semi-gradient Q-learning (S&B §10.1's episodic semi-gradient update, with Q-learning's max
    target as in eq. 6.8): the gradient of Q(s, a) is 1 on its active tiles, so each moves by
        w[a, i] <- w[a, i] + (alpha / n_tilings) * [r + gamma * max_a' Q(s', a') - Q(s, a)].
    alpha / n_tilings makes alpha the step size of a whole Q value (S&B §9.5.4).
    A start of 0 is optimistic on MountainCar, so epsilon can be 0 there (S&B §10.1).
    """

    def __init__(self, coder: TileCoder, n_actions: int, alpha: float, gamma: float,
                 start: float = 0.0):
        self.coder, self.alpha, self.gamma, self.epsilon = coder, alpha, gamma, 0.0
        self.w = np.full((n_actions, coder.n_features), start / coder.n_tilings)
        self.touches = np.zeros(self.w.size)     # scratch for update: samples per weight, all 0

    def q_values(self, obs) -> np.ndarray:
        """(n_actions,) for one state, (B, n_actions) for a batch."""
        return self.w.take(self.coder(obs), axis=1).sum(axis=-1).T

    def act(self, obs, rng: np.random.Generator, greedy: bool = False) -> int:
        if not greedy and rng.random() < self.epsilon:
            return int(rng.integers(self.w.shape[0]))
        return greedy_with_ties(self.q_values(obs), rng)

    def update(self, s, a, r, s2, terminated) -> float:
        B, T = len(r), self.coder.n_tilings      # w: (A, F), A actions, F features
        tiles = self.coder(np.concatenate([s, s2]))               # (2B, T): both in one call
        tiles, next_tiles = tiles[:B], tiles[B:]                  # (B, T) each
        flat = (a[:, None] * self.w.shape[1] + tiles).ravel()     # (B*T,) indices into w.flat
        q = self.w.take(flat).reshape(B, T).sum(axis=1)           # (B,) Q(s, a)
        q_all_next = self.w.take(next_tiles, axis=1).sum(axis=2)  # (A, B) Q(s', every a')
        q_next = q_all_next.max(axis=0)                           # (B,) max_a' Q(s', a')
        delta = r + self.gamma * np.where(terminated, 0.0, q_next) - q        # (B,)
        # Samples of a batch can share a weight w[a, i]: each weight moves by the MEAN TD error of
        # the samples that touch it (a sum would overshoot with large batches). So each sample
        # adds delta / (how many samples touch that weight); `touches` counts them, then resets.
        np.add.at(self.touches, flat, 1.0)                        # (A*F,) samples per weight
        step = (self.alpha / T) * np.repeat(delta, T) / self.touches[flat]   # (B*T,)
        self.touches[flat] = 0.0                                  # all zeros again
        np.add.at(self.w.reshape(-1), flat, step)                 # w.flat[flat] += step
        return float(np.abs(delta).mean())

    def set_untried(self, s, a, value: np.ndarray):
        """Before offline pre-training (§5): on every tile the data visits, the actions it never
        tried there start so that a state of such tiles alone has Q = the mean of `value` over the
        rows that visit the tile (value[i] belongs to row i; a NaN is no value)."""
        tiles, known = self.coder(s), np.isfinite(value)          # (N, T), (N,)
        T, n_features = tiles.shape[1], self.w.shape[1]
        tried = np.zeros(self.w.shape, bool)
        tried[a[:, None], tiles] = True
        count = np.bincount(tiles[known].ravel(), minlength=n_features)
        total = np.bincount(tiles[known].ravel(), np.repeat(value[known], T), minlength=n_features)
        mean = total / np.maximum(count, 1)                       # (n_features,)
        untried = (count > 0)[None, :] & ~tried
        self.w[untried] = np.broadcast_to(mean / T, self.w.shape)[untried]


# Continuous actions (Pendulum): a small actor-critic. A deterministic actor a = pi(s) and a
# critic Q(s, a) learn from replayed transitions of any policy, so the same `update` serves the
# offline pre-training and the online fine-tuning. The networks are tiny multi-layer perceptrons
# with hand-written forward and backward passes, and Adam (Appendix E: machinery a reader may
# take on trust; the tests check the gradients against finite differences).

class ActorCritic:
    """TD3 (Fujimoto, van Hoof & Meger 2018): DDPG (Lillicrap et al. 2016) with three fixes,
    (1) the smaller of twin critics, (2) delayed actor updates, (3) a smoothed target action.

    Actor  pi(s) = center + scale * tanh(MLP(s)), deterministic; exploration adds Gaussian noise.
    Critics Q1, Q2 (s, a), regressed onto one target:
        y = r + gamma * (1 - terminated) * min_i Q'_i(s2, pi'(s2) + clipped noise)   fixes 1, 3
    Actor: gradient ascent on Q1(s, pi(s)), every `policy_delay` critic steps           fix 2
    Targets (primed) follow slowly: theta' <- theta' + tau (theta - theta').
    Offline, plain TD3 chases actions the data never shows (the critic is wrong there), so
    during pre-training the actor also imitates the data (TD3+BC, Fujimoto & Gu 2021):
        actor loss = -Q1(s, pi(s)) / mean|Q1| + bc_weight * |(pi(s) - a) / scale|^2.
    """

    def __init__(self, obs_dim: int, action_low, action_high, rng: np.random.Generator,
                 gamma: float = 0.99, hidden=(32, 32), lr: float = 1e-3, tau: float = 0.005,
                 policy_delay: int = 2, policy_noise: float = 0.2, noise_clip: float = 0.5,
                 exploration_noise: float = 0.1, offline_bc_weight: float = 0.4):
        # Noises are fractions of half the action range. offline_bc_weight 0.4 = 1 / alpha, with
        # alpha = 2.5, the value TD3+BC's paper (Fujimoto & Gu 2021) uses for every task.
        self.low = np.asarray(action_low, np.float32).reshape(-1)
        self.high = np.asarray(action_high, np.float32).reshape(-1)
        self.center, self.scale = (self.high + self.low) / 2, (self.high - self.low) / 2
        self.obs_dim, act_dim = obs_dim, len(self.low)
        self.rng, self.gamma, self.tau, self.policy_delay = rng, gamma, tau, policy_delay
        self.policy_noise, self.noise_clip = policy_noise, noise_clip
        self.exploration_noise = exploration_noise
        self.offline_bc_weight, self.bc_weight = offline_bc_weight, 0.0
        self.actor = MLP([obs_dim, *hidden, act_dim], rng)
        self.critic = MLP([obs_dim + act_dim, *hidden, 1], rng, n_nets=2)   # twins Q1, Q2
        self.actor_target = MLP([obs_dim, *hidden, act_dim], rng)
        self.critic_target = MLP([obs_dim + act_dim, *hidden, 1], rng, n_nets=2)
        self.actor_target.theta[:] = self.actor.theta
        self.critic_target.theta[:] = self.critic.theta
        self.actor_opt, self.critic_opt = Adam(self.actor.theta, lr), Adam(self.critic.theta, lr)
        self.updates = 0

    def policy(self, net: MLP, obs: np.ndarray) -> tuple:
        """(actions (B, act_dim), tanh of the net's output, the net's layer inputs)."""
        z, inputs = net.forward(obs)
        tanh_z = np.tanh(z[0])
        return self.center + self.scale * tanh_z, tanh_z, inputs

    def act(self, obs, rng: np.random.Generator, greedy: bool = False) -> np.ndarray:
        a = self.policy(self.actor, np.asarray(obs, np.float32).reshape(1, -1))[0][0]
        if not greedy:
            a = a + self.exploration_noise * self.scale * rng.standard_normal(a.shape, np.float32)
        return np.clip(a, self.low, self.high)

    def update(self, s, a, r, s2, terminated) -> float:
        B = len(s)
        s, s2 = np.asarray(s, np.float32), np.asarray(s2, np.float32)
        a = np.asarray(a, np.float32).reshape(B, -1)
        r = np.asarray(r, np.float32).reshape(B, 1)
        alive = 1 - np.asarray(terminated, np.float32).reshape(B, 1)   # truncation still bootstraps
        # critics: both regress onto y, built from the smaller target critic
        a2 = self.policy(self.actor_target, s2)[0]
        noise = self.rng.standard_normal(a2.shape, np.float32) * self.policy_noise
        a2 = np.clip(a2 + np.clip(noise, -self.noise_clip, self.noise_clip) * self.scale,
                     self.low, self.high)
        q2, _ = self.critic_target.forward(np.concatenate([s2, a2], axis=1))
        y = r + self.gamma * alive * np.minimum(q2[0], q2[1])
        loss, grad = self.critic_loss(s, a, y)
        self.critic_opt.step(grad)
        # actor and target networks, every policy_delay steps
        self.updates += 1
        if self.updates % self.policy_delay == 0:
            self.actor_opt.step(self.actor_loss(s, a)[1])
            for net, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                target.theta += self.tau * (net.theta - target.theta)
        return loss

    def critic_loss(self, s, a, y) -> tuple:
        """L = sum_i mean_B (Q_i(s, a) - y)^2, y held fixed. Returns (L, dL/dtheta_critic)."""
        q, inputs = self.critic.forward(np.concatenate([s, a], axis=1))      # (2, B, 1)
        error = q - y
        grad, _ = self.critic.backward(inputs, (2.0 / len(s)) * error)
        return float((error ** 2).sum() / len(s)), grad

    def actor_loss(self, s, a) -> tuple:
        """L = -q_scale * mean_B Q1(s, pi(s)) + bc_weight * mean_B |(pi(s) - a) / scale|^2.
        Plain TD3: q_scale = 1, bc_weight = 0. TD3+BC: q_scale = 1 / mean|Q1| (held fixed: it
        only sets the two terms' balance), on actions scaled to [-1, 1] as Fujimoto & Gu do.
        Returns (L, dL/dtheta_actor)."""
        B = len(s)
        pi, tanh_z, actor_inputs = self.policy(self.actor, s)                  # (B, act_dim)
        q1, critic_inputs = self.critic.forward(np.concatenate([s, pi], axis=1), first_only=True)
        q_scale = 1.0 / (float(np.abs(q1).mean()) + 1e-6) if self.bc_weight > 0 else 1.0
        _, d_critic_input = self.critic.backward(critic_inputs, np.full_like(q1, -q_scale / B),
                                                 first_only=True)    # (1, B, obs_dim + act_dim)
        d_pi = d_critic_input[0, :, self.obs_dim:]    # dL/da: the columns of the action input
        loss = -q_scale * float(q1.mean())
        if self.bc_weight > 0:
            gap = (pi - a) / self.scale
            loss += self.bc_weight * float((gap ** 2).sum() / B)
            d_pi = d_pi + (2.0 * self.bc_weight / B) * gap / self.scale
        d_z = d_pi * self.scale * (1 - tanh_z ** 2)   # through a = center + scale * tanh(z)
        grad, _ = self.actor.backward(actor_inputs, d_z[None])
        return loss, grad


# How the Q-learners explore. "optimistic" (the registry's settings): Q starts at 0, above every
# return where steps cost -1, so the greedy policy tries every untried action by itself (S&B
# §2.6). "undirected" (the paper's DoubleDQN, online_main.py): epsilon-greedy with a constant
# 0.1, gamma 0.99, Q below every return: a tried action rises above the untried ones, and only
# chance tries something new. The actor-critic, exploring by noise on its torque, has no
# optimism to switch off: it is the same under both.
EXPLORATIONS = ("optimistic", "undirected")


def exploration_settings(spec: EnvSpec, exploration: str) -> tuple:
    """(gamma, where Q-values start, epsilon schedule) of a Q-learner."""
    if exploration == "optimistic" or spec.learner == "actor_critic":
        return spec.gamma, 0.0, spec.epsilon
    # With gamma = 1 no start can be pessimistic: a step costing r < 0 moves Q towards r + Q0 < Q0,
    # so a tried action always falls below an untried one. With gamma < 1 a start below
    # r_min / (1 - gamma), the lowest return, moves up: r + gamma Q0 > Q0 (minus 1: strictly).
    gamma = min(spec.gamma, 0.99)
    return gamma, min(0.0, spec.worst_reward) / (1 - gamma) - 1.0, (0.1, 0.1, 1)


def make_learner(spec: EnvSpec, rng: np.random.Generator, alpha_scale: float = 1.0,
                 exploration: str = "optimistic"):
    """A fresh learner of the registry's kind with the registry's hyperparameters; `alpha_scale`
    multiplies its step size (a slower learner); `exploration` sets gamma and the Q start."""
    env, hyper = make_env(spec.env_id), dict(spec.hyper)
    hyper["alpha" if spec.learner in ("tabular", "linear") else "lr"] *= alpha_scale
    gamma, start, _ = exploration_settings(spec, exploration)
    if spec.learner == "tabular":
        return TabularQ(env.observation_space.n, env.action_space.n, gamma=gamma, start=start,
                        **hyper)
    if spec.learner == "linear":
        coder = TileCoder(hyper.pop("low"), hyper.pop("high"), hyper.pop("n_tilings"),
                          hyper.pop("n_bins"))
        return LinearQ(coder, env.action_space.n, gamma=gamma, start=start, **hyper)
    return ActorCritic(env.observation_space.shape[0], env.action_space.low, env.action_space.high,
                       rng, gamma=spec.gamma, **hyper)


# --- §5 The warm start ---------------------------------------------------------------------------
# Steps 2 and 3 of LORO, in three ingredients, each a Config field that can be switched
# (bench/README.md measures each):
#  1. Where untried actions start (`init_untried`). The data says nothing about actions the prior
#     never tried. Left at the learner's optimistic start ("keep"), they look best after
#     pre-training and the learner drops the prior's knowledge: the offline trap (Levine, Kumar,
#     Tucker & Fu 2020). Pinned at the worst return ("pessimistic"), they stay below everything
#     and switch off the optimism MountainCar explores with. "calibrated" follows Cal-QL
#     (Nakamoto et al. 2023): in a state s of the data an untried action starts a hair below (a
#     tie goes to the data's action) the prior's own return from s (Monte Carlo, S&B §5.1),
#         V_mu(s) = the mean of G_t = r_t + gamma r_{t+1} + ... over the data's visits of s,
#     counting only episodes that TERMINATED: the return of an episode the clock cut is censored,
#     not a value (Pardo et al. 2018). A state with no uncensored return keeps the learner's start.
#  2. Offline updates (`pretrain_updates`): by default the learner's own replay ratio on the rows.
#  3. The prior's rows in each minibatch (`prior_share`): by default on top of a full batch of the
#     learner's own, so they never crowd out fresh rows (Lee et al. 2021's balanced replay); or a
#     fixed share (0.5 is RLPD's symmetric sampling, Ball et al. 2023; 0 a fresh buffer, WSRL,
#     Zhou et al. 2024). Fine-tuning starts at once, without waiting for own rows (§6).
# The actor-critic has no untried actions: instead, while offline, its actor imitates the data
# (TD3+BC, Fujimoto & Gu 2021), with every start but "keep". What each choice gives up, on which
# metric, is measured in bench/README.md §5.


class ReplayBuffer:
    """Prior rows in [0, P), online rows in [P, P + n). Nothing is ever evicted: the buffer
    holds a whole run (budgets here are tens of thousands of steps)."""

    def __init__(self, prior: Dataset | None, capacity: int, obs_example, action_example):
        P = 0 if prior is None else len(prior)
        obs, action = np.asarray(obs_example), np.asarray(action_example)
        examples = (obs, action, np.float64(0), obs, np.bool_(False))   # one of each column
        # obs, actions, rewards, next_obs, terminated: the prior's rows first
        self.columns = [np.zeros((P + capacity,) + x.shape, x.dtype) for x in examples]
        for column, key in zip(self.columns, DATASET_KEYS[:5] if P else ()):
            column[:P] = getattr(prior, key)
        self.n_prior, self.n_online = P, 0

    def add(self, obs, action, reward, next_obs, terminated):
        for column, value in zip(self.columns, (obs, action, reward, next_obs, terminated)):
            column[self.n_prior + self.n_online] = value
        self.n_online += 1

    def sample(self, batch_size: int, prior_share, rng: np.random.Generator) -> tuple:
        """A minibatch (ingredient 3). `prior_share` None: `batch_size` of the learner's own rows
        plus round(batch_size * P / (P + n)) of the prior's on top, so the batch shrinks from
        about 2 x batch_size towards batch_size as the learner's own n rows arrive; a number:
        that share of `batch_size` from the prior; a buffer of one kind: uniform over its rows."""
        P, n = self.n_prior, self.n_online
        if P == 0 or n == 0:
            idx = rng.integers(0, P + n, batch_size)
        elif prior_share is None:
            idx = np.concatenate([P + rng.integers(0, n, batch_size),
                                  rng.integers(0, P, round(batch_size * P / (P + n)))])
        else:
            k = round(prior_share * batch_size)
            idx = np.concatenate([rng.integers(0, P, k), P + rng.integers(0, n, batch_size - k)])
        return tuple(column[idx] for column in self.columns)


def pretrain(learner, prior: Dataset, updates: int, batch_size: int, rng: np.random.Generator,
             untried: np.ndarray | None = None, imitate: bool = False) -> np.ndarray:
    """Step 2 of LORO: off-policy updates on the prior's data alone. Returns the loss per update.
    `untried`: one value per row of the prior, where the Q-learners' untried actions of that
    row's state start (ingredient 1; None: where they are). `imitate`: the actor-critic's actor
    also imitates the data (TD3+BC's term) while offline."""
    buffer = ReplayBuffer(prior, 0, prior.obs[0], prior.actions[0])
    if untried is not None and hasattr(learner, "set_untried"):
        learner.set_untried(prior.obs, prior.actions, untried)
    if imitate and hasattr(learner, "bc_weight"):
        learner.bc_weight = learner.offline_bc_weight
    losses = [learner.update(*buffer.sample(batch_size, None, rng)) for _ in range(updates)]
    if hasattr(learner, "bc_weight"):
        learner.bc_weight = 0.0                  # online it is plain TD3 again
    return np.array(losses)


UNTRIED = ("calibrated", "pessimistic", "keep")


def untried_values(mode: str, spec: EnvSpec, prior: Dataset,
                   exploration: str = "optimistic") -> np.ndarray | None:
    """Per row of the prior, the value its state's untried actions start at (ingredient 1), for
    a learner exploring by `exploration` (§4); NaN: no value, the start stays. Under "undirected"
    the learner's own start is below every return, which is already the offline trap's guard:
    untried actions keep it whatever the mode. Raised to V_mu they would outrank the data's own
    actions, whose values are still climbing from that start (bench/README.md §5)."""
    gamma = exploration_settings(spec, exploration)[0]
    if mode == "keep" or exploration == "undirected":
        return None
    if mode == "calibrated":                     # V_mu, a hair below: ties go to the data's action
        g = prior.returns_to_go(gamma)
        g = g - 1e-6 * (1.0 + np.abs(g))
        g[prior.censored()] = np.nan             # a censored return is no value
        return g
    horizon = spec.max_steps if gamma == 1 else min(spec.max_steps, 1 / (1 - gamma))
    return np.full(len(prior), min(0.0, float(prior.rewards.min())) * horizon)


def warm_start(learner, prior: Dataset, cfg: Config, spec: EnvSpec, rng: np.random.Generator):
    """LORO's step 2 with the settings of `cfg`: ingredients 1 and 2."""
    updates = cfg.pretrain_updates
    if updates is None:                          # the learner's own replay ratio
        updates = -(-len(prior) // spec.update_every)
    values = untried_values(cfg.init_untried, spec, prior, cfg.exploration)
    return pretrain(learner, prior, updates, spec.batch_size, rng, untried=values,
                    imitate=cfg.init_untried != "keep")


# --- §6 The same-budget experiment ---------------------------------------------------------------
# Five methods share one budget of environment steps, the prior's included (step 4 of LORO):
#   rl      the learner alone, online from scratch
#   llm     the prior alone, playing the whole budget
#   mix     the prior's episodes, then the learner online with the prior's data in its buffer
#   loro    the same, with the warm start of §5 first
#   random  uniformly random actions
# Two curves score a run, one point every `eval_every` steps. The paper's: the learner's greedy
# return over `eval_episodes` episodes of a separate environment, where exploring costs nothing.
# What the agent earned: the return of the episode it was playing then, exploration included.
# While no learner acts (the prior's phase, llm, random) both are the acting policy's episode.
# The paper's metric is the sum of the curve: the cumulative reward over the budget. Each seed's
# prior comes from make_priors (Appendix C): a window of a recorded file, or fresh episodes.

def checkpoints(cfg: Config) -> np.ndarray:
    return np.arange(cfg.eval_every, cfg.budget_steps + 1, cfg.eval_every)


def behaviour_curve(lengths, returns, points: np.ndarray) -> np.ndarray:
    """A non-learning policy's curve: at step c, the return of the episode its c-th step was in."""
    ends = np.cumsum(lengths)
    return np.asarray(returns, dtype=float)[np.searchsorted(ends, points)]


def evaluate(learner, env: gym.Env, episodes: int, rng: np.random.Generator) -> float:
    """Mean return of the greedy policy (no exploration) over a few episodes."""
    total = 0.0
    for _ in range(episodes):
        obs, _ = env.reset()
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(learner.act(obs, rng, greedy=True))
            total += reward
            done = terminated or truncated
    return total / episodes


def play_random(spec: EnvSpec, budget: int, seed: int) -> tuple:
    """Episode lengths and returns of uniformly random actions until the budget is spent."""
    env = make_env(spec.env_id)
    env.action_space.seed(stream_seed(seed, "random policy"))
    env.reset(seed=stream_seed(seed, "random policy", 1))
    lengths, returns = [0], [0.0]                # the last entry: the episode being played
    while sum(lengths) < budget or lengths[-1]:           # until an episode ends past the budget
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        lengths[-1] += 1
        returns[-1] += reward
        if terminated or truncated:
            env.reset()
            lengths.append(0)
            returns.append(0.0)
    return lengths[:-1], returns[:-1]


def episode_scores(dataset: Dataset, spec: EnvSpec) -> tuple:
    """(lengths, returns, scores) of a dataset's episodes; a score is what a point of a curve
    counts. An episode the clock cut before the environment's own cap (Pendulum's recorded
    episodes end at 50 of its 200 steps) scores its mean reward per step times the cap, so that
    it compares with a learner's full episode; any other episode scores its return."""
    _, lengths = np.unique(dataset.episode, return_counts=True)
    returns = dataset.episode_returns()
    ends = dataset.terminated | dataset.truncated           # one row per episode, in order
    cut = dataset.truncated[ends] & (lengths < spec.max_steps)
    return lengths, returns, np.where(cut, returns * spec.max_steps / lengths, returns)


def prior_was_scaled(results: dict) -> bool:
    """Did the points of the prior's phase score cut episodes as full ones (episode_scores)?"""
    scored = [np.mean(results["methods"][m]["prior_phase"]) for m in ("mix", "loro", "llm")
              if m in results["methods"]]
    return bool(scored) and not np.isclose(scored[0], np.mean(results["prior"]["raw_prior_phase"]))


def play_prior(cfg: Config, spec: EnvSpec, prior: Dataset, seed: int,
               recorded: Dataset | None = None) -> tuple:
    """Episode lengths, scores and returns of the prior over the whole budget (method `llm`):
    its episodes from the prior phase, then more. A recorded dataset cannot play on: the file's
    episodes are replayed in turn from the seed's window on, which estimates the same mean."""
    lengths, returns, scores = (list(x) for x in episode_scores(prior, spec))
    if recorded is not None:
        more = episode_scores(recorded, spec)
        k = prior.meta.get("window", [0])[0]
    while sum(lengths) < cfg.budget_steps:
        if recorded is not None:
            length, ret, score = (x[k] for x in more)
            k = (k + 1) % len(more[0])
        else:                                    # episodes are numbered on after the prior's
            e = len(lengths)
            chat = make_chat_factory(cfg, spec, seed)(e)
            rows = play_episode(spec, chat, e, seed, cfg.prompt_mode, cfg.votes)["rows"]
            length = len(rows)
            ret = score = sum(row[2] for row in rows)
        lengths.append(length)
        returns.append(ret)
        scores.append(score)
    return lengths, scores, returns


def run_one(method: str, cfg: Config, seed: int, prior: Dataset | None,
            recorded: Dataset | None = None) -> dict:
    """One run of one method: its two curves, `curve` (greedy, the paper's) and `earned`."""
    spec, points, started, raw = env_spec(cfg.env_id), checkpoints(cfg), time.time(), None
    if method == "random":
        curve = earned = behaviour_curve(*play_random(spec, cfg.budget_steps, seed), points)
    elif method == "llm":
        lengths, scores, returns = play_prior(cfg, spec, prior, seed, recorded)
        curve = earned = behaviour_curve(lengths, scores, points)
        raw = behaviour_curve(lengths, returns, points).sum()   # cut episodes unscaled
    else:
        curve, earned = learn_online(method, cfg, spec, seed, None if method == "rl" else prior,
                                     points)
    return dict(method=method, seed=seed, curve=curve, earned=earned, raw_cumulative=raw,
                seconds=time.time() - started)


def learn_online(method: str, cfg: Config, spec: EnvSpec, seed: int, prior: Dataset | None,
                 points: np.ndarray) -> tuple:
    """Steps 2 and 3 for `loro` (pre-train, then learn online), step 3 alone for `mix` and `rl`.
    Returns the two learning curves: greedy evaluation, and the returns of the episodes played."""
    rng = np.random.default_rng(stream_seed(seed, "learner"))
    eval_rng = np.random.default_rng(stream_seed(seed, "evaluation"))
    learner = make_learner(spec, rng, cfg.alpha_scale, cfg.exploration)
    schedule = exploration_settings(spec, cfg.exploration)[2]
    curve, lengths, returns, start = [], [], [], 0
    if prior is not None:                        # the prior's phase: its own episodes' scores
        start = len(prior)
        lengths, _, returns = (list(x) for x in episode_scores(prior, spec))
        curve = list(behaviour_curve(lengths, returns, points[points <= start]))
        if method == "loro":                     # step 2: pre-train on the prior's data alone
            warm_start(learner, prior, cfg, spec, rng)
    env, eval_env = make_env(spec.env_id), make_env(spec.env_id)
    obs, _ = env.reset(seed=stream_seed(seed, "training env"))
    eval_env.reset(seed=stream_seed(seed, "evaluation env"))
    buffer = ReplayBuffer(prior, cfg.budget_steps - start, obs, env.action_space.sample())
    # A fresh learner waits for enough of its OWN rows: the online part of a minibatch must not be
    # copies of a handful of transitions. A warm-started one goes on learning at once (the
    # prior's rows count): its greedy policy is scored from its first online point, and left
    # unchanged it would repeat the pre-trained mistakes (bench/README.md §3: the cliff).
    learning_starts = max(spec.batch_size, spec.learning_starts)
    if method == "loro":
        learning_starts = max(0, learning_starts - buffer.n_prior)
    episode_return, episode_length = 0.0, 0
    # Step 3, online. t counts environment steps of the whole budget, the prior's included, so
    # a warm-started learner begins at t = start and every method stops at the same step.
    for t in range(start, cfg.budget_steps):
        if schedule:
            learner.epsilon = epsilon_at(schedule, t)
        action = learner.act(obs, rng)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated)   # obs: the state BEFORE the action
        obs = next_obs
        episode_return += reward
        episode_length += 1
        if terminated or truncated:
            lengths.append(episode_length)
            returns.append(episode_return)
            obs, _ = env.reset()
            episode_return, episode_length = 0.0, 0
        if buffer.n_online >= learning_starts and (t + 1) % spec.update_every == 0:
            learner.update(*buffer.sample(spec.batch_size, cfg.prior_share, rng))
        if (t + 1) % cfg.eval_every == 0:
            curve.append(evaluate(learner, eval_env, cfg.eval_episodes, eval_rng))
    # The budget ends mid-episode: play that episode out, learning nothing, so that the "earned"
    # curve's last points score a whole episode (these steps are not counted against the budget).
    while episode_length:
        obs, reward, terminated, truncated, _ = env.step(learner.act(obs, rng))
        episode_return += reward
        episode_length += 1
        if terminated or truncated:
            lengths.append(episode_length)
            returns.append(episode_return)
            episode_length = 0
    assert len(curve) == len(points)             # one point per eval_every steps of the budget
    return np.array(curve), behaviour_curve(lengths, returns, points)


def summarize(curve: np.ndarray, points: np.ndarray, threshold: float, prior_steps: int = 0,
              learner_from: int | None = 0) -> dict:
    """The paper's metric, the cumulative reward (the sum of the curve), split at the end of the
    prior's episodes (`prior_steps`); the final return (the last 10% of the curve); and the
    learner's OWN steps to the threshold: from `learner_from` (the step the learner starts
    acting) to its first point at or above the threshold (None: never, or no learner)."""
    in_prior = points <= prior_steps
    reached = [] if learner_from is None else np.flatnonzero((curve >= threshold) &
                                                              (points > learner_from))
    own_steps = int(points[reached[0]]) - learner_from if len(reached) else None
    tail = max(1, len(curve) // 10)
    return dict(cumulative=float(curve.sum()), prior_phase=float(curve[in_prior].sum()),
                learner_phase=float(curve[~in_prior].sum()), final=float(curve[-tail:].mean()),
                own_steps_to_threshold=own_steps)


def learner_starts(method: str, prior_steps: int) -> int | None:
    """The step after which a method's points are a learner's: rl from the start, mix and loro
    after the prior's episodes; llm and random never learn (None)."""
    return {"rl": 0, "mix": prior_steps, "loro": prior_steps}.get(method)


def run_experiment(cfg: Config, log: Callable = print) -> dict:
    """The same-budget comparison: every method x every seed. Returns a JSON-ready dict."""
    cfg = cfg.resolved().check()
    spec = env_spec(cfg.env_id)
    points, seeds = checkpoints(cfg), [cfg.seed + i for i in range(cfg.seeds)]
    priors, recorded = {}, None
    if any(m in cfg.methods for m in ("llm", "mix", "loro")):
        priors, recorded = make_priors(cfg, spec, seeds, log)
    tasks = [(m, cfg, s, priors.get(s), recorded if m == "llm" else None)
             for s in seeds for m in cfg.methods]
    results, started = {m: [] for m in cfg.methods}, time.time()
    for i, r in enumerate(parallel_map(run_one, tasks, cfg.jobs), 1):   # Appendix D
        prior_steps = len(priors[r["seed"]]) if priors else 0
        r.update(summarize(r["curve"], points, spec.threshold, prior_steps,
                           learner_starts(r["method"], prior_steps)))
        r["earned_cumulative"] = float(r["earned"].sum())
        results[r["method"]].append(r)
        if i % len(cfg.methods) == 0:            # tasks run seed by seed: one line per seed
            log(f"  {cfg.env_id} seed {r['seed']}: {', '.join(cfg.methods)} done "
                f"({time.time() - started:.0f} s)")
    keys = ("cumulative", "prior_phase", "learner_phase", "earned_cumulative", "final",
            "own_steps_to_threshold", "raw_cumulative")
    raw_prior_phase = []                         # the prior's phase with cut episodes unscaled
    for p in priors.values():
        lengths, returns, _ = episode_scores(p, spec)
        raw_prior_phase.append(float(behaviour_curve(lengths, returns, points[points <= len(p)])
                                     .sum()))
    source, kind = prior_source(cfg, recorded)
    return dict(
        env=cfg.env_id, budget_steps=cfg.budget_steps, eval_every=cfg.eval_every,
        eval_episodes=cfg.eval_episodes, threshold=spec.threshold, checkpoints=points.tolist(),
        prior=dict(source=source, kind=kind, episodes=cfg.prior_episodes,
                   steps=[len(p) for p in priors.values()], raw_prior_phase=raw_prior_phase,
                   windows=[p.meta.get("window") for p in priors.values()],
                   mean_return=[float(p.episode_returns().mean()) for p in priors.values()]),
        config={k: v for k, v in dataclasses.asdict(cfg).items() if k != "api_key"},
        methods={m: dict(**{k: [r[k] for r in rs] for k in keys},
                         curves=[r["curve"].tolist() for r in rs],
                         earned_curves=[r["earned"].tolist() for r in rs],
                         seconds=[round(r["seconds"], 2) for r in rs])
                 for m, rs in results.items()})


def sample_std(values) -> float:
    """The standard deviation over seeds, the sample's (ddof=1); 0 for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def verdict(results: dict) -> str:
    """One plain line: did the warm start pay over the whole budget, and what came after the
    prior's phase? loro and rl are paired seed by seed (a seed gives both the same random
    streams). Seeds whose prior windows hold the same episodes of a file share their data, so
    their differences are averaged first: the rule counts K independent priors, not seeds. A
    mean difference beyond two standard errors of those K averages pays (or costs)."""
    m = results["methods"]
    if "rl" not in m or "loro" not in m:
        return ""
    rl, lo = np.array(m["rl"]["cumulative"]), np.array(m["loro"]["cumulative"])
    scale = abs(rl.mean()) or 1.0
    by_window = collections.defaultdict(list)    # the seeds' differences, by their data window
    for seed, (window, diff) in enumerate(zip(results["prior"]["windows"], lo - rl)):
        by_window[str(window) if window else seed].append(diff)
    diffs = np.array([np.mean(d) for d in by_window.values()])   # one per independent window
    said = f"loro {lo.mean():,.0f} against rl {rl.mean():,.0f}"
    if len(diffs) < 2:
        said = f"one prior gives no verdict: {said}"
    else:
        gap, se = diffs.mean(), sample_std(diffs) / np.sqrt(len(diffs))
        said = ("the warm start " + ("paid" if gap > 2 * se else "did not pay" if gap < -2 * se
                                     else "made no clear difference")
                + f": {said}; paired by seed over {len(diffs)} independent priors, the "
                  f"gap is {gap / scale:+.1%} ± {2 * se / scale:.1%} (two standard errors)")
    steps, points = results["prior"]["steps"], np.array(results["checkpoints"])
    after = [int((points > s).sum()) for s in steps]
    rl_first = np.mean([sum(c[:n]) for c, n in zip(m["rl"]["curves"], after)])
    n_prior = len(points) - int(np.mean(after))
    during = f"the prior's {results['prior']['episodes']} episodes ({np.mean(steps):,.0f} steps)"
    prior = (f"no point fell in {during}" if n_prior == 0 else
             f"the {n_prior} point{'s' * (n_prior > 1)} taken during {during} summed to "
             f"{np.mean(m['loro']['prior_phase']):,.0f}, rl's to "
             f"{np.mean(m['rl']['prior_phase']):,.0f}")
    return (f"{results['env']}: {said}. Of that, {prior}. After them loro scored "
            f"{np.mean(m['loro']['learner_phase']):,.0f}; rl scored "
            f"{np.mean(m['rl']['learner_phase']):,.0f} over the same points and {rl_first:,.0f} "
            f"over its own first as many.")


# --- §7 Diagnostics ------------------------------------------------------------------------------
# Why does (or doesn't) the warm start pay? The paper's argument is coverage: the LLM's data
# "sufficiently covers state-actions visited by optimal policies". For the grid games the
# optimal policy can be computed exactly from the environment's own transition table
# (env.unwrapped.P), so coverage becomes a number instead of a hope.

class Transitions(NamedTuple):
    """gymnasium's P[s][a] = [(prob, s2, reward, terminated), ...] as flat arrays, one entry per
    possible outcome k of each (s, a): the k-th outcome leads from s[k] under a[k] to s2[k]."""
    s: np.ndarray             # (K,) state
    a: np.ndarray             # (K,) action
    p: np.ndarray             # (K,) probability of this outcome
    s2: np.ndarray            # (K,) next state
    r: np.ndarray             # (K,) reward
    done: np.ndarray          # (K,) terminated
    n_states: int
    n_actions: int
    start: np.ndarray         # (n_states,) the initial state distribution


def transition_table(env_id: str) -> Transitions:
    env = make_env(env_id).unwrapped
    rows = [(s, a, *outcome) for s in env.P for a in env.P[s] for outcome in env.P[s][a]]
    s, a, p, s2, r, done = (np.array(x) for x in zip(*rows))
    return Transitions(s, a, p, s2.astype(int), r.astype(float), done.astype(bool),
                       env.observation_space.n, env.action_space.n,
                       np.asarray(env.initial_state_distrib))


def value_iteration(env_id: str, gamma: float | None = None, tol: float = 1e-10,
                    max_iters: int = 100_000) -> np.ndarray:
    """Q* by value iteration (S&B §4.4, eq. 4.10):
        V(s) <- max_a sum_{s2} p(s2 | s, a) [r + gamma * V(s2)],   V = 0 after termination."""
    t = transition_table(env_id)
    gamma = env_spec(env_id).gamma if gamma is None else gamma
    v = np.zeros(t.n_states)
    for _ in range(max_iters):
        q = np.zeros((t.n_states, t.n_actions))
        np.add.at(q, (t.s, t.a), t.p * (t.r + gamma * np.where(t.done, 0.0, v[t.s2])))
        converged = np.abs(q.max(axis=1) - v).max() < tol
        v = q.max(axis=1)
        if converged:
            break
    return q


def policy_visits(env_id: str, policy: np.ndarray, horizon: int | None = None) -> tuple:
    """Exact expected visits to each state within `horizon` steps, and the expected return, of
    a policy from the initial state distribution. `policy`: one action per state, or a table
    pi[s, a] of probabilities."""
    t = transition_table(env_id)
    pi = np.asarray(policy)
    if pi.ndim == 1:                             # deterministic: one action per state
        pi = np.eye(t.n_actions)[pi]
    horizon = horizon or env_spec(env_id).max_steps
    now, visits, expected_return = t.start.astype(float), np.zeros(t.n_states), 0.0
    for _ in range(horizon):
        visits += now
        flow = now[t.s] * pi[t.s, t.a] * t.p     # probability mass along each outcome
        expected_return += float(flow @ t.r)
        now = np.bincount(t.s2[~t.done], flow[~t.done], minlength=t.n_states)
    return visits, expected_return


def optimal_policy(env_id: str) -> np.ndarray:
    """pi*[s, a]: uniform over the optimal actions of each state. Weighting by it (rather than
    one argmax) keeps coverage independent of how ties between equally good actions break."""
    q = value_iteration(env_id)
    optimal = np.isclose(q, q.max(axis=1, keepdims=True), atol=1e-6)
    return optimal / optimal.sum(axis=1, keepdims=True)


def coverage(dataset: Dataset, env_id: str) -> dict:
    """How much of what an optimal policy does is in the dataset. `state_action`: the share of
    the optimal policy's expected visits to (s, a) pairs (the policy uniform over tied optimal
    actions) that the dataset holds; `states`: the same for states. Also the arrays behind them,
    for plot_coverage: `optimal` pi*[s, a], `occupancy` its visits per state, `seen` (s, a) in
    the data."""
    if env_spec(env_id).learner != "tabular":
        raise LoroError(f"coverage needs a grid game with a transition table, not {env_id}")
    pi = optimal_policy(env_id)
    visits, _ = policy_visits(env_id, pi)
    pair_visits = visits[:, None] * pi           # (n_states, n_actions)
    seen_pairs = np.zeros(pi.shape, bool)
    seen_pairs[dataset.obs, dataset.actions] = True
    total = visits.sum()
    visited = visits > 1e-9
    return dict(state_action=float(pair_visits[seen_pairs].sum() / total),
                states=float(visits[seen_pairs.any(axis=1)].sum() / total),
                optimal_states=int(visited.sum()),
                covered_states=int((visited & (seen_pairs & (pi > 0)).any(axis=1)).sum()),
                optimal=pi, occupancy=visits, seen=seen_pairs)


def which_episodes(dataset: Dataset) -> str:
    """"episodes 12-21" of a window of a recorded file, else "10 episodes"."""
    window = dataset.meta.get("window")
    return f"episodes {window[0]}-{window[-1]}" if window else \
        f"{len(np.unique(dataset.episode))} episodes"


# --- §8 Plots ------------------------------------------------------------------------------------
# Functions return matplotlib figures; the caller shows or saves them.

METHOD_STYLE = {"loro": ("tab:red", "loro (warm start + fine-tune)"),
                "mix": ("tab:orange", "mix (prior data, no warm start)"),
                "rl": ("tab:blue", "rl (RL from scratch)"),
                "llm": ("tab:green", "llm (the prior alone)"), "random": ("tab:gray", "random")}
PANELS = {"curves": "greedy policy, separate environment (the paper's)",
          "earned_curves": "the episodes played, exploration included",
          "cumulative": "the greedy curve's running sum (the paper's metric)"}
BANDS = "bands: ±1 sample std over seeds (learners only), kept within the runs' range"
LEARNERS = ("rl", "mix", "loro")


def _band(ax, x, runs: np.ndarray, color: str, label: str | None, band: bool = True):
    """The mean over seeds, shaded ±1 sample std, clipped to what the runs scored at each
    point: a band never claims a return above the best run (or below the worst)."""
    mean, std = runs.mean(axis=0), runs.std(axis=0, ddof=1 if len(runs) > 1 else 0)
    ax.plot(x, mean, color=color, label=label, lw=1.5 if band else 1.0)
    if band:
        ax.fill_between(x, np.maximum(mean - std, runs.min(axis=0)),
                        np.minimum(mean + std, runs.max(axis=0)), color=color, alpha=0.15, lw=0)
    return mean


def _fit_y(ax, means: dict, extra=(), prior_bulk: bool = True) -> str:
    """y limits that show every learner's whole mean curve (rl, mix, loro, from their first
    point) and, with `prior_bulk`, most of the prior's. Returns what the limits leave out."""
    low = min(m.min() for k, m in means.items() if k in LEARNERS)
    if prior_bulk and "llm" in means:
        low = min(low, np.percentile(means["llm"], 5))
    high = max([m.max() for m in means.values()] + list(extra))
    pad = 0.05 * (high - low + 1e-9)
    ax.set_ylim(low - pad, high + pad)
    below = [k for k, m in means.items() if m.max() < low - pad]
    partly = [k for k, m in means.items() if m.min() < low - pad <= m.max()]
    said = [f"{', '.join(below)} below the axis"] if below else []
    said += [f"{', '.join(partly)} partly below"] if partly else []
    return f"\n({'; '.join(said)})" if said else ""


def plot_curves(results: dict, ax=None, key: str = "curves", log_x: bool = True, legend=True):
    """One panel: the learning curves under one protocol (`key` "curves", the paper's greedy
    evaluation, or "earned_curves"), or the paper's metric as it accrues ("cumulative"). The x
    axis is logarithmic by default: the warm start matters in the first few thousand steps."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.6)) if ax is None else (ax.figure, ax)
    x, means, running = np.array(results["checkpoints"]), {}, key == "cumulative"
    for method, r in results["methods"].items():
        runs = np.cumsum(r["curves"], axis=1) if running else np.array(r[key])
        color, label = METHOD_STYLE[method]
        total = np.mean(runs[:, -1] if running else runs.sum(axis=1))
        means[method] = _band(ax, x, runs, color, f"{label}: {total:,.0f}", method in LEARNERS)
    if not running:
        ax.axhline(results["threshold"], color="k", lw=0.8, ls=":", label="threshold")
    if results["prior"]["steps"]:
        ax.axvline(np.mean(results["prior"]["steps"]), color="k", lw=0.8, ls="--",
                   label="end of the prior's episodes")
    off = _fit_y(ax, means, [0.0 if running else results["threshold"]], prior_bulk=not running)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())   # minor labels collide at small budgets
    ax.set(xlabel="environment steps, the prior's included" + (" (log scale)" if log_x else ""),
           ylabel="sum of the greedy curve so far" if running else "return",
           title=PANELS[key] + off)
    ax.title.set_fontsize(9)
    if legend:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
                  title=f"method: sum of the curve; {BANDS}", title_fontsize=8)
    return fig


def plot_results(results: dict):
    """A comparison in three panels: the curves under both protocols, and the cumulative
    reward. One legend below them; the title names the exploration and the prior."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    for ax, key in zip(axes, PANELS):
        plot_curves(results, ax, key, legend=False)
    handles, labels = axes[0].get_legend_handles_labels()
    for i, (m, r) in enumerate(results["methods"].items()):
        labels[i] = (f"{METHOD_STYLE[m][1]}: {np.mean(r['cumulative']):,.0f} greedy, "
                     f"{np.mean(r['earned_cumulative']):,.0f} earned")
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, title_fontsize=9,
               bbox_to_anchor=(0.5, -0.02), title=f"method: cumulative reward, the sum of each "
               f"curve (mean over seeds); {BANDS}")
    seeds = len(next(iter(results["methods"].values()))["curves"])
    fig.suptitle(f"{results['env']}, budget {results['budget_steps']:,} steps, {seeds} seeds, "
                 f"{results['config']['exploration']} exploration; prior: "
                 f"{results['prior']['source']}" + ("\nthe prior's episodes, cut short, are "
                 "scored as full ones (mean reward per step x the game's cap)"
                 if prior_was_scaled(results) else ""),
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


GRID_MAPS = {"CliffWalking-v1": CLIFF_MAP, "FrozenLake-v1": FROZEN_LAKE_MAP}
ARROWS = {"CliffWalking-v1": [(0, -1), (1, 0), (0, 1), (-1, 0)],     # up right down left (dx, dy)
          "FrozenLake-v1": [(-1, 0), (0, 1), (1, 0), (0, -1)]}       # left down right up


def plot_coverage(dataset: Dataset, env_id: str, ax=None):
    """Where the prior went: a heat-map of the dataset's state visits, with the optimal
    policy's action drawn on every state it visits (CliffWalking, FrozenLake)."""
    import matplotlib.pyplot as plt
    if env_id not in GRID_MAPS:
        raise LoroError(f"the coverage map is drawn for {', '.join(GRID_MAPS)}, not {env_id}")
    grid = GRID_MAPS[env_id]
    n_rows, n_cols = len(grid), len(grid[0])
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * n_cols + 1.5, 0.6 * n_rows + 0.8))
    ends = dataset.next_obs[dataset.terminated | dataset.truncated]
    visits = np.bincount(np.concatenate([dataset.obs, ends]), minlength=n_rows * n_cols)
    image = ax.imshow(np.log1p(visits.reshape(n_rows, n_cols)), cmap="Blues")
    cov = coverage(dataset, env_id)
    pi, occupancy, seen = cov["optimal"], cov["occupancy"], cov["seen"]
    for s in range(n_rows * n_cols):
        row, col = divmod(s, n_cols)
        if grid[row][col] in "CHG":
            ax.text(col, row, grid[row][col], ha="center", va="center", color="tab:red")
        elif occupancy[s] > 1e-3:                # an optimal action: the data's if it has one
            optimal = np.flatnonzero(pi[s] > 0)
            covered = optimal[seen[s, optimal]]
            dx, dy = ARROWS[env_id][covered[0] if len(covered) else optimal[0]]
            ax.arrow(col - 0.25 * dx, row - 0.25 * dy, 0.3 * dx, 0.3 * dy, head_width=0.15,
                     color="tab:orange" if len(covered) else "tab:red")
    ax.set(xticks=range(n_cols), yticks=range(n_rows),
           title=f"{env_id}: {which_episodes(dataset)}, {len(dataset)} steps of\n"
                 f"{dataset.meta.get('source', 'a prior')}\noptimal actions in the data "
                 f"(orange) or not (red): {cov['state_action']:.0%} of its visits")
    ax.figure.colorbar(image, ax=ax, label="log(1 + visits)", shrink=0.8)
    return ax.figure


# --- Appendix A. The stand-in --------------------------------------------------------------------
# The machinery starts here; a first reading can stop at §8. The stand-in reads the messages an
# LLM reads (numbers from the observation, the map from the system message) and answers in the
# same format, so the whole pipeline runs without a model. It is a few rules of thumb per game,
# NOT an LLM: what it produces is labelled "scripted(noise=...)" everywhere.

class ScriptedChat:
    """Rules of thumb behind the chat interface. `noise`: the chance that a reply names a random
    legal action instead of the rule's, the prior's quality from good (0) to useless (1)."""

    def __init__(self, env_id: str, noise: float = 0.0, seed=0):
        self.spec, self.noise, self.rng = env_spec(env_id), noise, np.random.default_rng(seed)
        self.rule = SCRIPTED_RULES[env_id.split("-")[0]]
        self.name = f"scripted(noise={noise:g})"

    def chat(self, messages: list, sample: int = 0) -> Reply:
        if self.rng.random() < self.noise:
            if self.spec.continuous_range:
                action = round(float(self.rng.uniform(*self.spec.continuous_range)), 2)
            else:
                action = int(self.rng.integers(len(self.spec.actions))) + 1
            return Reply(f"I will try something different. Action: {action}")
        reason, action = self.rule(messages[0]["content"], messages[-1]["content"])
        return Reply(f"{reason}\nAction: {action:.2f}" if isinstance(action, float) else
                     f"{reason}\nAction: {action}")


def _floats(text: str) -> list:
    return [float(x) for x in re.findall(r"[+-]\d+\.\d+", text)]


def _cells(text: str) -> list:
    return [(int(r), int(c)) for r, c in re.findall(r"row (\d+), column (\d+)", text)]


def rule_cartpole(system, user):
    x, v, theta, omega = _floats(user)
    if theta + 0.5 * omega > 0:
        return "The pole leans or falls to the right, so I push the cart right.", 2
    return "The pole leans or falls to the left, so I push the cart left.", 1


def rule_mountain_car(system, user):
    position, velocity = _floats(user)
    if velocity >= 0:
        return "The car is moving right, so I accelerate right to build momentum.", 3
    return "The car is moving left, so I accelerate left to swing higher.", 1


def rule_pendulum(system, user):
    angle, cos, sin, velocity = _floats(user)
    if cos > 0.85:                               # near the top: a PD controller holds it there
        torque = -(8.0 * angle + 1.5 * velocity)
        return "It is near upright, so I brake it toward the top.", float(np.clip(torque, -2, 2))
    energy = 0.5 * velocity ** 2 - 10.0 * (1.0 - cos)   # 0 when it would just reach the top
    if energy < 0:                               # too little energy: push along the swing
        return "It needs more energy, so I push along its swing.", 2.0 if velocity >= 0 else -2.0
    return "It has enough energy to reach the top, so I let it swing.", 0.0


def rule_cliff_walking(system, user):
    (row, col), = _cells(user)
    if row == 3:
        return "I am on the bottom row next to the cliff, so I step up first.", 1
    if col == 11:
        return "I am above the goal column, so I move down.", 3
    if row == 2:
        return "The row above the cliff is safe, so I move right toward the goal.", 2
    return "I move down toward the safe row above the cliff.", 3


_GRID_MOVES = {"left": (0, -1), "down": (1, 0), "right": (0, 1), "up": (-1, 0)}  # action order
HOLE = 20                                        # a hole costs more than any path around it


def rule_frozen_lake(system, user):
    lake = [line for line in system.splitlines() if line and set(line) <= set("SFHG")]
    n_rows, n_cols = len(lake), len(lake[0])

    def after(cell, move):                       # where a move lands: the edge leaves you in place
        r, c = cell[0] + _GRID_MOVES[move][0], cell[1] + _GRID_MOVES[move][1]
        return (r, c) if 0 <= r < n_rows and 0 <= c < n_cols else cell
    goal = next((r, c) for r, line in enumerate(lake) for c, ch in enumerate(line) if ch == "G")
    distance, frontier = {goal: 0}, [goal]       # breadth-first search: each cell's moves to goal
    while frontier:
        cell = frontier.pop(0)
        for move in _GRID_MOVES:
            nxt = after(cell, move)
            if nxt not in distance and lake[nxt[0]][nxt[1]] != "H":
                distance[nxt] = distance[cell] + 1
                frontier.append(nxt)
    here = _cells(user)[0]

    def risk(move):                              # the ice slides sideways 2 times in 3
        sideways = ["up", "down"] if move in ("left", "right") else ["left", "right"]
        return sum(distance.get(after(here, m), HOLE) for m in [move] + sideways)
    best = min(_GRID_MOVES, key=risk)
    return (f"Going {best} keeps me closest to the goal even if I slide sideways.",
            list(_GRID_MOVES).index(best) + 1)


SCRIPTED_RULES = {"CartPole": rule_cartpole, "MountainCar": rule_mountain_car,
                  "Pendulum": rule_pendulum,
                  "CliffWalking": rule_cliff_walking, "FrozenLake": rule_frozen_lake}


# --- Appendix B. The HTTP client -----------------------------------------------------------------
# POST {base_url}/chat/completions, the OpenAI-compatible protocol spoken by OpenAI, Ollama
# (http://localhost:11434/v1), vLLM (:8000/v1), llama.cpp's server and LM Studio. Real servers
# fail in real ways: the client retries what a retry can heal (a timeout, a lost connection, 429
# and 5xx, a reply cut off in transit) and explains the rest in one line.

RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504, 529}
OPENAI_URL = "https://api.openai.com/v1"
TOKENS = ("prompt_tokens", "completion_tokens")
NO_USAGE = dict(calls=0, retries=0, prompt_tokens=0, completion_tokens=0, seconds=0.0)
CUT_OFF = "cut off"                              # a reply that stopped short in transit


@dataclass
class Reply:
    """One chat completion: the text (None when the server sent no content) and its cost."""
    text: str | None
    finish_reason: str | None = "stop"           # "length": cut at max_tokens
    usage: dict | None = None                    # TOKENS, as far as the server counted them
    latency: float = 0.0
    retries: int = 0                             # failed attempts before this reply came through
    reasoning: str | None = None                 # a reasoning model's thinking, beside the answer


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _amount(value) -> float:
    """A count or a duration from a server or a file: a number from 0 to 1e15, else 0."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if number and 0 <= value <= 1e15 else 0


class ChatClient:
    """A minimal Chat Completions client over `requests`: retries, clear errors, a deadline per
    call, usage accounting. One HTTP session per thread, so episodes can run in parallel."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 temperature: float = 0.0, max_tokens: int = 256, seed: int | None = 0,
                 timeout: float = 60.0, retries: int = 4, sleep: Callable | None = None):
        self.base_url, self.model = base_url.rstrip("/"), model
        self.url = self.base_url + "/chat/completions"
        # Local servers ignore the key, but some proxies refuse a request without the header.
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "sk-no-key-needed"
        self.temperature, self.max_tokens, self.seed = temperature, max_tokens, seed
        self.timeout, self.retries = timeout, retries
        self.sleep = sleep                       # None: wait between retries (tests record them)
        self.name = f"{model} @ {self.base_url}"
        self.stats = dict(NO_USAGE)
        self._lock, self._local = threading.Lock(), threading.local()

    @classmethod
    def from_config(cls, cfg: Config) -> ChatClient:
        cfg.check()
        return cls(cfg.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL, cfg.model,
                   cfg.api_key, cfg.temperature, cfg.max_tokens, cfg.llm_seed, cfg.timeout,
                   cfg.retries)

    def settings(self) -> dict:
        """What shapes the replies, for a dataset's metadata. Never the API key."""
        return dict(base_url=self.base_url, model=self.model, temperature=self.temperature,
                    max_tokens=self.max_tokens, seed=self.seed)

    def request(self, messages: list, sample: int = 0) -> dict:
        """The request body. Sampling parameters are always explicit: servers' defaults differ.
        Each sample of a vote gets its own seed, or a seeded server would repeat one answer."""
        body = dict(model=self.model, messages=messages, temperature=self.temperature,
                    max_tokens=self.max_tokens, stream=False)
        if self.seed is not None:
            body["seed"] = self.seed + sample
        return body

    def chat(self, messages: list, sample: int = 0, stop: threading.Event | None = None) -> Reply:
        """One completion. A problem that a retry may heal is retried after as long as the server
        asks, else after about 0.5, 1, 2, 4, 8, 8 ... s; one that it cannot raises at once, and
        so does `stop` once set (by a collection: another episode gave up, Ctrl-C)."""
        body, stop, cut_offs = self.request(messages, sample), stop or threading.Event(), 0
        for attempt in range(self.retries + 1):
            started = time.monotonic()
            reply, problem, wait = self._attempt(body, started + self.timeout, stop)
            if reply is not None:
                reply.latency, reply.retries = time.monotonic() - started, attempt
                with self._lock:
                    self.stats["calls"] += 1
                    self.stats["seconds"] += reply.latency
                    for name in TOKENS:
                        self.stats[name] += reply.usage[name]
                return reply
            cut_offs += problem == CUT_OFF
            if attempt == self.retries or stop.is_set():
                break
            with self._lock:
                self.stats["retries"] += 1
            if wait is None:                     # jittered, so that workers do not move as one
                wait = min(0.5 * 2 ** attempt, 8.0) * pyrandom.uniform(0.75, 1.25)
            if self.sleep is not None:
                self.sleep(wait)
            elif stop.wait(wait):                # woken early: the collection is stopping
                break
        if problem == CUT_OFF:
            problem = f"the reply from {self.url} was cut off in transit {cut_offs} times"
        raise LoroError(f"{problem} (gave up after {attempt} retries)")

    def _attempt(self, body: dict, deadline: float, stop: threading.Event) -> tuple:
        """One request -> (Reply, None, None), or (None, problem, seconds the server asked us to
        wait or None) for a problem that a retry may heal; raises for one it cannot."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        try:
            response = self._local.session.post(
                self.url, json=body, headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=(min(5.0, self.timeout), self.timeout),    # connect, then each read
                stream=True, allow_redirects=False)
            read1 = getattr(response.raw, "read1", None)   # urllib3 2.3 and later; else bytewise
            with response:                       # the body as it arrives, given up at the
                chunks = []                      # deadline however slowly it trickles: requests
                while chunk := (read1(decode_content=True) if read1 else   # bounds each read
                                response.raw.read(1, decode_content=True)):
                    if time.monotonic() > deadline or stop.is_set():
                        raise requests.ReadTimeout()
                    chunks.append(chunk)
                response._content = b"".join(chunks)   # where requests keeps a body
        except (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError):
            return None, (f"no complete reply from {self.url} within --timeout "
                          f"{self.timeout:g} s; raise --timeout or check the server"), None
        except urllib3.exceptions.ProtocolError:            # closed mid-body, or mid-chunk
            return None, CUT_OFF, None
        except requests.ConnectionError as error:
            problem, heals = connection_problem(error, self.base_url)
            if not heals:
                raise LoroError(problem) from None
            return None, problem, None
        except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
            return None, f"the connection to {self.url} failed ({type(error).__name__})", None
        code = response.status_code
        if 300 <= code < 400:                    # it could drop the key or turn POST into GET
            where = requests.compat.urljoin(self.url, response.headers.get("Location", ""))
            raise LoroError(f"the server at {self.url} answered with a redirect (HTTP {code}) "
                            f"to {where}, which loro does not follow; set --base-url to the "
                            f"address it points to")
        if code == 200:
            reply = self._read(response)
            return (reply, None, None) if reply is not None else (None, CUT_OFF, None)
        problem = self._explain(response)
        if code not in RETRY_STATUSES:
            raise LoroError(problem)
        return None, problem, retry_after(response.headers)

    def _read(self, response: requests.Response) -> Reply | None:
        """A 200 answer -> a Reply; None for JSON that stops short (cut off in transit: a retry
        may heal it). Raises for one that will not heal: a web page (a --base-url without /v1),
        another API's JSON, an error object, a `content` not text, parts or null. A bookkeeping
        field of the wrong type (`usage`, `finish_reason`) counts as absent."""
        try:
            data = response.json()
        except RecursionError:                   # nested deeper than Python's decoder goes
            data = None
        except ValueError:
            data = None
            said_json = "json" in response.headers.get("Content-Type", "json")  # or said nothing
            if said_json and response.text.lstrip().startswith(("{", "[")):
                return None
        if isinstance(data, dict) and "error" in data:      # some servers report errors with 200
            raise LoroError(self._explain(response))
        choices = data.get("choices") if isinstance(data, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(message, dict) or not isinstance(content, (str, list, type(None))):
            snippet = " ".join(response.text.replace(self.api_key, "***").split())[:80]
            raise LoroError(f"the server at {self.url} answered with something that is not a "
                            f"chat completion ({snippet!r}); --base-url should be an "
                            f"OpenAI-compatible API, usually ending in /v1")
        if isinstance(content, list):            # content as a list of parts: keep the text ones
            content = "".join(_text(part.get("text")) or "" for part in content
                              if isinstance(part, dict))
        # reasoning models served by vLLM put their thinking beside the answer, not in it
        reasoning = _text(message.get("reasoning_content")) or _text(message.get("reasoning"))
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Reply(content, _text(choice.get("finish_reason")),
                     {name: int(_amount(usage.get(name))) for name in TOKENS},
                     reasoning=reasoning)

    def _explain(self, response: requests.Response) -> str:
        """An error answer -> one line that says what is wrong and what to do."""
        code, message = response.status_code, error_message(response, secret=self.api_key)
        lowered = message.lower()
        said = f"HTTP {code}: {message}"
        if code in (401, 403) or "api key" in lowered:
            return (f"the server at {self.base_url} rejected the API key ({said}); "
                    f"set --api-key or OPENAI_API_KEY")
        if "model" in lowered and any(w in lowered for w in ("not found", "does not exist",
                                                              "invalid model", "no models")):
            return (f"model {self.model!r} is not available at {self.base_url} ({said}); check "
                    f"--model, or pull it first (e.g. `ollama pull {self.model}`)")
        if code == 404:
            return (f"no chat endpoint at {self.url} ({said}); --base-url should end in /v1, "
                    f"e.g. http://localhost:11434/v1")
        if any(w in lowered for w in ("context length", "context size", "context window",
                                      "maximum context", "too many tokens", "too long")):
            return (f"the prompt does not fit the model's context window ({said}); lower "
                    f"--max-tokens, use --prompt-mode direct, or serve a longer context")
        return f"the server at {self.base_url} answered {said}"


def error_message(response: requests.Response, secret: str | None = None) -> str:
    """The message inside an error body, whichever shape the server uses: {"error": {"message"}}
    (OpenAI, Ollama, llama.cpp), {"error": "..."} (vLLM auth, LM Studio), {"message": ...}
    (older vLLM), {"detail": ...} (FastAPI), or plain text."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    message = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        message = message or body.get("message") or body.get("detail")
    if not isinstance(message, str) or not message.strip():
        message = response.text or response.reason or "no details"
    if secret:                                   # some servers echo the key they rejected
        message = message.replace(secret, "***")
    return " ".join(message.split())[:300]


def retry_after(headers) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `Retry-After` (seconds or an HTTP date, RFC
    9110 §10.2.3), capped at a minute; None if absent or unreadable."""
    try:
        if headers.get("retry-after-ms"):
            seconds = float(headers["retry-after-ms"]) / 1000
        elif headers.get("Retry-After"):
            try:
                seconds = float(headers["Retry-After"])
            except ValueError:                   # a date; "-0000" and asctime ones are naive: UTC
                when = email.utils.parsedate_to_datetime(headers["Retry-After"])
                when = when.replace(tzinfo=when.tzinfo or datetime.timezone.utc)
                seconds = when.timestamp() - time.time()
        else:
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(seconds) else min(max(seconds, 0.0), 60.0)


def connection_problem(error: requests.ConnectionError, base_url: str) -> tuple:
    """A request that got no HTTP answer -> (one line that says what was there, whether a retry
    may heal it): nothing listening, something that speaks another protocol, or a closed door."""
    cause, where = error, base_url.split("/")[2]           # host:port
    while cause.args and isinstance(cause.args[-1], BaseException):   # requests and urllib3
        cause = cause.args[-1]                                         # nest the cause in args
    if isinstance(error, requests.exceptions.SSLError):
        return (f"the TLS handshake with {where} failed ({cause}); if the server speaks plain "
                f"HTTP, --base-url should start with http://"), False
    if isinstance(cause, ConnectionResetError):          # also http.client's RemoteDisconnected
        return (f"something at {where} accepted the connection but closed it without an HTTP "
                f"answer ({type(cause).__name__}); check the port of --base-url, and whether "
                f"it needs https://"), True
    if type(cause).__module__ == "http.client":        # BadStatusLine: the answer was not HTTP
        said = str(cause.args[0] if cause.args else cause).strip()[:60]
        return (f"something listens at {where} but does not speak HTTP: it answered {said!r}; "
                f"check the port of --base-url"), False
    return (f"cannot reach the server at {base_url} ({type(error).__name__}); is it running? "
            f"check --base-url"), True


# --- Appendix C. Collection: parallel, resumable, validated --------------------------------------
# `collect` plays many episodes of play_episode (§3) on worker threads, each through an
# EpisodeChat that numbers its steps. With an output file every answer goes at once to a
# transcript, which a re-run replays: a crash, Ctrl-C or a lost server loses nothing.

def _as_dataset(spec: EnvSpec, episodes: list, meta: dict) -> Dataset:
    """Finished episodes -> a Dataset, with the parse counts in its metadata."""
    rows = [(*row, e["episode"]) for e in episodes for row in e["rows"]]
    obs_type = np.int64 if spec.learner == "tabular" else np.float32
    types = (obs_type, np.float32 if spec.continuous_range else np.int64, np.float64, obs_type,
             bool, bool, np.int64)                # in the order of DATASET_KEYS
    columns = zip(*rows) if rows else [[]] * 7
    counts = {rule: sum(e["counts"].get(rule, 0) for e in episodes) for rule in PARSE_RULES}
    meta = dict(meta, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), episodes=len(episodes),
                parse_counts=counts, parse_counts_per_episode=[e["counts"] for e in episodes],
                fallback_causes={c: sum(e["counts"].get(c, 0) for e in episodes)
                                 for c in FALLBACK_CAUSES},
                fallback_rate=counts["fallback"] / max(sum(counts.values()), 1))
    return Dataset(*(np.array(c, dtype=t) for c, t in zip(columns, types)), meta=meta)


def save_dataset(dataset: Dataset, path: str):
    arrays = {k: getattr(dataset, k) for k in DATASET_KEYS}
    tmp = path + ".tmp.npz"                      # write, then rename: never half a file
    try:
        np.savez_compressed(tmp, **arrays, meta=np.array(to_json(dataset.meta)))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):                  # a full disk: no half-written file left behind
            os.remove(tmp)


def load_dataset(path: str, env_id: str | None = None) -> Dataset:
    """Read and validate a dataset file; a bad one is rejected with a one-line reason."""
    if not os.path.exists(path):
        raise LoroError(f"{path}: no such file; collect one with `python loro.py collect`")
    if os.path.isdir(path):
        raise LoroError(f"{path} is a folder; name a .npz file in it")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as error:
        raise LoroError(f"{path}: not a readable .npz file ({type(error).__name__}); "
                        f"re-collect it with `python loro.py collect`") from None
    missing = [k for k in DATASET_KEYS + ("meta",) if k not in arrays]
    if missing:
        raise LoroError(f"{path}: missing arrays {', '.join(missing)}; a dataset needs "
                        f"{', '.join(DATASET_KEYS)} and meta")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (ValueError, RecursionError):         # RecursionError: nested deeper than it can read
        meta = None
    if not isinstance(meta, dict):
        raise LoroError(f"{path}: `meta` is not a JSON object")
    dataset = Dataset(**{k: arrays[k] for k in DATASET_KEYS}, meta=meta)
    problem = check_dataset(dataset, env_id or meta.get("env_id"))
    if problem:
        raise LoroError(f"{path}: {problem}")
    return dataset


MAX_REWARD = 1e9                # no game here comes near; a larger reward is a broken file


def check_dataset(d: Dataset, env_id: str | None) -> str | None:
    """The first thing wrong with a dataset, or None."""
    if not isinstance(d.meta.get("env_id"), str):
        return ("its meta names no env_id, so nothing says which game it was collected on; "
                "add \"env_id\" to meta or re-collect it with `python loro.py collect`")
    if d.meta.get("env_id") != env_id:
        return (f"collected on {d.meta.get('env_id')!r}, not {env_id!r}; "
                f"pass --env {d.meta.get('env_id')} or a dataset of {env_id}")
    collection = d.meta.get("collection", {})   # how it was recorded; run reads its step cap
    cap = collection.get("step_cap") if isinstance(collection, dict) else "?"
    if cap is not None and (type(cap) is not int or cap < 1):
        return "meta's `collection` must be a JSON object, its `step_cap` a positive integer"
    spec, space = env_spec(env_id), make_env(env_id).observation_space
    if any(np.ndim(getattr(d, key)) == 0 for key in DATASET_KEYS):
        return "every array must have one row per transition, not a single value"
    n = len(d.rewards)
    if n == 0:
        return "holds no transitions"
    for key in DATASET_KEYS:
        if len(getattr(d, key)) != n:
            return f"`{key}` has {len(getattr(d, key))} rows but `rewards` has {n}"
    for key in ("rewards", "terminated", "truncated", "episode"):
        if getattr(d, key).ndim != 1:
            return f"`{key}` must have shape (N,): one value per row"
    if d.terminated.dtype != bool or d.truncated.dtype != bool:
        return "`terminated` and `truncated` must be bool arrays"
    if d.episode.dtype.kind not in "iu" or np.any(d.episode[1:] < d.episode[:-1]):
        return "`episode` must be non-decreasing integers"
    for key in ("obs", "next_obs", "actions", "rewards"):
        x = getattr(d, key)
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            return f"`{key}` holds NaN or infinite values"
    for key in ("obs", "next_obs"):
        x = getattr(d, key)
        if isinstance(space, gym.spaces.Discrete):
            if x.dtype.kind not in "iu" or x.ndim != 1 or x.min() < 0 or x.max() >= space.n:
                return f"`{key}` must hold integer states 0..{space.n - 1}, shape (N,)"
        elif x.dtype.kind != "f" or x.shape[1:] != space.shape:
            return f"`{key}` must be floats of shape (N, {', '.join(map(str, space.shape))})"
    if spec.continuous_range:
        low, high = spec.continuous_range
        if d.actions.dtype.kind != "f" or d.actions.shape != (n, 1) or \
                np.any(d.actions < low) or np.any(d.actions > high):
            return f"`actions` must be floats of shape (N, 1) in [{low}, {high}]"
    elif d.actions.dtype.kind not in "iu" or d.actions.ndim != 1 or d.actions.min() < 0 \
            or d.actions.max() >= len(spec.actions):
        return f"`actions` must be integers 0..{len(spec.actions) - 1}, shape (N,)"
    if d.rewards.dtype.kind != "f" or np.abs(d.rewards).max() > MAX_REWARD:
        return f"`rewards` must be floats of magnitude at most {MAX_REWARD:g}"
    ends = d.terminated | d.truncated
    last = np.r_[d.episode[1:] != d.episode[:-1], True]
    if np.any(ends != last):
        return "every episode must end, and only end, with terminated or truncated"
    same = ~last[:-1]                            # consecutive rows of one episode
    if not np.allclose(d.next_obs[:-1][same], d.obs[1:][same]):
        return "within an episode `next_obs` of a row must equal `obs` of the next row " \
               "(is the action paired with the state after it?)"
    return None


class Transcript:
    """OUT.transcript.jsonl: the collection's settings (once it holds answers, a re-run of other
    settings is refused), then every answer as one JSON line (episode, step and sample, messages,
    reply, a reasoning model's thinking, finish_reason, latency, usage, retries). A re-run replays
    what each (episode, step, sample) got for the same prompt, exactly, in whatever order the
    workers ran and however nondeterministic the server. Append-only; a line cut short by a
    crash, or not a JSON object, is skipped."""

    def __init__(self, path: str, settings: dict):
        self.path, self.lock, self.answers = path, threading.Lock(), {}   # (episode, step, sample)
        self.usage = dict(NO_USAGE)              # calls, retries, tokens, seconds, over every run
        with open(path, "a+", encoding="utf-8", errors="replace") as f:
            f.seek(0)
            text = f.read()
            if text and not text.endswith("\n"):     # a crash cut the last line short: end it,
                f.write("\n")                        # so that the next one does not glue onto it
        recorded = None                          # the settings of the answers in the file
        for line in text.split("\n"):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict) and "settings" in record:
                recorded = record["settings"]
            elif isinstance(record, dict):
                self.count(record)
                where = (record.get("episode"), record.get("step"), record.get("sample"))
                if all(type(x) is int for x in where):
                    self.answers[where] = record
        if self.answers and recorded is not None:        # none yet: other settings are fine
            _same_collection(path, recorded, settings)
        if recorded != settings:
            self.write(dict(settings=settings))

    def write(self, record: dict):               # at once: a crash loses no answer
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(to_json(record) + "\n")
            if "settings" not in record:
                self.count(record)

    def cost(self) -> dict:
        return dict(self.usage, seconds=round(self.usage["seconds"], 2))

    def count(self, record: dict):
        """Add an answer's cost to the usage ("cached": a replay, written by an older version)."""
        if record.get("cached"):
            return
        usage = record.get("usage") if isinstance(record.get("usage"), dict) else {}
        self.usage["calls"] += 1
        self.usage["retries"] += int(_amount(record.get("retries")))
        self.usage["seconds"] += _amount(record.get("latency"))
        for name in TOKENS:
            self.usage[name] += int(_amount(usage.get(name)))


FALLBACK_CAUSES = ("empty content", "reasoning, no answer", "cut at --max-tokens", "unparseable")


class EpisodeChat:
    """The `chat` of one episode of a collection (ask_policy's, §2). It numbers the steps (a step
    asks for sample 0 first), replays the transcript, logs new answers and keeps each step's
    replies (for the fallback causes). Once `stop` is set it asks nothing more."""

    def __init__(self, chat, episode: int, transcript: Transcript | None, stop: threading.Event):
        self.inner, self.episode, self.transcript, self.stop = chat, episode, transcript, stop
        self.steps: list = []                    # per step, its replies
        self.behind: list = []                   # (messages, sample) replayed, not asked

    def chat(self, messages: list, sample: int = 0) -> Reply:
        if self.stop.is_set():
            raise LoroError("stopped: the collection is stopping")
        if sample == 0:
            self.steps.append([])
        step = len(self.steps) - 1
        old = self.transcript.answers.get((self.episode, step, sample)) if self.transcript else None
        replayed = old is not None and old.get("messages") == messages
        if replayed:
            reply = Reply(_text(old.get("reply")), _text(old.get("finish_reason")),
                          reasoning=_text(old.get("reasoning")))
            self.behind.append((messages, sample))
        elif isinstance(self.inner, ChatClient):
            reply = self.inner.chat(messages, sample, stop=self.stop)
        else:        # the stand-in draws from one random stream per episode: it catches up on the
            for asked in self.behind:            # steps replayed, so that it goes on as it would
                self.inner.chat(*asked)          # have without the interruption
            self.behind.clear()
            reply = self.inner.chat(messages, sample)
        if self.transcript is not None and not replayed:
            self.transcript.write(dict(
                episode=self.episode, step=step, sample=sample, messages=messages,
                reply=reply.text, reasoning=reply.reasoning, finish_reason=reply.finish_reason,
                latency=round(reply.latency, 4), usage=reply.usage, retries=reply.retries))
        self.steps[-1].append(reply)
        return reply

    def counts(self, rules: list) -> dict:
        """How often each parse rule (§2) chose this episode's action, and why each fallback did:
        its step's replies' most telling fault."""
        counts = dict.fromkeys(PARSE_RULES + FALLBACK_CAUSES, 0)
        for rule, replies in zip(rules, self.steps):
            counts[rule] += 1
            if rule != "fallback":
                continue
            if any(r.finish_reason == "length" for r in replies):
                counts["cut at --max-tokens"] += 1
            elif any(r.text and r.text.strip() for r in replies):
                counts["unparseable"] += 1
            elif any(r.reasoning for r in replies):
                counts["reasoning, no answer"] += 1
            else:
                counts["empty content"] += 1
        return counts


def collect(spec: EnvSpec, chat_for_episode: Callable, n_episodes: int, seed: int = 0,
            mode: str = "direct", votes: int = 1, workers: int = 1, out: str | None = None,
            meta: dict | None = None, log: Callable = print,
            max_steps: int | None = None) -> Dataset:
    """Step 1 of LORO: the prior plays `n_episodes` (`workers` at a time; steps within one are
    sequential) and its transitions become a Dataset; it stops once they take more than
    `max_steps` steps (the run's budget). With `out` every answer goes at once to the transcript,
    so after a crash, Ctrl-C or a lost server the same command asks only for what is missing."""
    if mode not in PROMPT_MODES:
        raise LoroError(f"unknown prompt mode {mode!r}; choose one of {', '.join(PROMPT_MODES)}")
    meta = dict(meta or {}, env_id=spec.env_id, seed=seed, prompt=dict(
        (meta or {}).get("prompt", {}), mode=mode, votes=votes if mode == "vote" else 1))
    transcript = None
    if out:
        settings = {k: meta.get(k) for k in ("env_id", "source", "seed", "prompt")}
        old = load_dataset(out) if os.path.exists(out) else None
        if old is not None:
            _same_collection(out, old.meta, settings)
        transcript = Transcript(out + ".transcript.jsonl", settings)
        if old is not None and len(np.unique(old.episode)) >= n_episodes:
            log(f"  {out} already holds {len(np.unique(old.episode))} episodes; nothing to collect")
            old.meta["usage"] = transcript.cost()
            return old.select_episodes(range(n_episodes))
        if transcript.answers:
            log(f"  resuming: {len(transcript.answers)} answers found in {transcript.path}")

    def one(e):
        chat = EpisodeChat(chat_for_episode(e), e, transcript, stop)
        try:
            result = play_episode(spec, chat, e, seed, mode, votes)
        except BaseException:
            stop.set()                             # the other episodes stop at their next call
            raise
        result["counts"] = chat.counts(result["rules"])
        return result

    stop, started, done = threading.Event(), time.time(), {}
    pool = concurrent.futures.ThreadPoolExecutor(max(1, workers))
    try:
        for future in concurrent.futures.as_completed([pool.submit(one, e)
                                                       for e in range(n_episodes)]):
            result = future.result()
            done[result["episode"]] = result
            steps = sum(len(e["rows"]) for e in done.values())
            log(f"  episode {result['episode'] + 1}/{n_episodes}: {len(result['rows'])} steps, "
                f"return {sum(r[2] for r in result['rows']):.1f}  ({len(done)} done, "
                f"{time.time() - started:.0f}s)")
            if max_steps is not None and steps > max_steps:
                raise LoroError(f"the prior's episodes take more than --budget-steps {max_steps} "
                                f"({steps} steps after {len(done)} of {n_episodes} episodes); "
                                f"raise the budget or lower --prior-episodes")
    except BaseException as error:                 # Ctrl-C, a lost server: keep what is done
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        if transcript is None or not isinstance(error, (KeyboardInterrupt, LoroError)):
            raise
        cause = "interrupted" if isinstance(error, KeyboardInterrupt) else error
        raise LoroError(f"{cause} ({len(done)} of {n_episodes} episodes are saved in "
                        f"{transcript.path}; run the same command again to resume)")
    pool.shutdown()
    dataset = _as_dataset(spec, [done[e] for e in sorted(done)], meta)
    if dataset.meta["fallback_rate"] >= 0.5:     # mostly random actions: say so, and why
        causes = ", ".join(f"{c}: {n}" for c, n in dataset.meta["fallback_causes"].items())
        log(f"warning: {dataset.meta['fallback_rate']:.0%} of the steps fell back to a random "
            f"action ({causes}); the data is mostly a random policy's: check the model, "
            f"--max-tokens and --prompt-mode")
    if out:
        dataset.meta["usage"] = transcript.cost()
        try:
            save_dataset(dataset, out)
        except OSError as error:
            raise LoroError(f"cannot write {out} ({error.strerror or error}); the {n_episodes} "
                            f"episodes are safe in {transcript.path}: fix that and run the same "
                            f"command again, which replays them without asking the model") from None
    return dataset


def _same_collection(path: str, old, new: dict):
    old = old if isinstance(old, dict) else {}
    for key in ("env_id", "source", "seed", "prompt"):
        if old.get(key) != new.get(key):
            raise LoroError(f"{path} was collected with {key}={old.get(key)!r}, not "
                            f"{new.get(key)!r}; choose another --out or the same settings")


def to_json(value) -> str:
    """JSON text of a value that may hold NumPy arrays and numbers (as lists and plain numbers)."""
    return json.dumps(value, default=lambda x: x.tolist())


# Each seed's prior for run_experiment (§6): a window of a recorded file, or fresh episodes of
# the stand-in or a live LLM. What plays it is settled first, by cfg.resolved() (§0).

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DEFAULT_PRIOR, STAND_IN, STAND_IN_NOISE = "qwen2.5-7b", "scripted", 0.2


def shipped_datasets(env_id: str) -> dict:
    """The recorded LLM datasets shipped in data/ for one environment: {model name: path}.
    They are the LORO paper's own (data/README.md): data/<env id>_<model name>.npz."""
    prefix = env_id + "_"
    names = sorted(os.listdir(DATA_DIR)) if os.path.isdir(DATA_DIR) else []
    return {f[len(prefix):-4]: os.path.join(DATA_DIR, f) for f in names
            if f.startswith(prefix) and f.endswith(".npz")}


def resolve(cfg: Config) -> Config:
    """A copy of cfg with the defaults filled in: budget, evaluation episodes, and the prior (a
    shipped dataset's path, or the stand-in's noise)."""
    spec, prior, noise, dataset = env_spec(cfg.env_id), cfg.prior, cfg.prior_noise, None
    shipped = shipped_datasets(cfg.env_id)
    if cfg.dataset or cfg.model:
        if prior is not None:
            raise LoroError("pass one prior: --prior, --dataset or --model")
        dataset = cfg.dataset
    elif prior is None and noise is None and DEFAULT_PRIOR in shipped:
        prior, dataset = DEFAULT_PRIOR, shipped[DEFAULT_PRIOR]
    elif prior in (None, STAND_IN):          # a noise alone asks for the stand-in
        prior, noise = STAND_IN, STAND_IN_NOISE if noise is None else noise
    elif prior not in shipped:
        raise LoroError(f"--prior {prior}: no such dataset is shipped for {cfg.env_id}; "
                        f"choose one of {', '.join([*shipped, STAND_IN])}")
    elif noise is not None:
        raise LoroError(f"--prior-noise is the stand-in's; pass --prior {STAND_IN} to use "
                        f"it, or drop it")
    else:
        dataset = shipped[prior]
    return dataclasses.replace(
        cfg, prior=prior, dataset=dataset, prior_noise=noise,
        budget_steps=spec.budget_steps if cfg.budget_steps is None else cfg.budget_steps,
        eval_episodes=spec.eval_episodes if cfg.eval_episodes is None else cfg.eval_episodes)


def make_chat_factory(cfg: Config, spec: EnvSpec, seed: int) -> Callable:
    """episode -> chat: an HTTP client to the LLM if --model is set, else the stand-in."""
    if cfg.model:
        client = ChatClient.from_config(cfg)
        return lambda episode: client
    return lambda episode: ScriptedChat(spec.env_id, cfg.prior_noise,
                                        seed=stream_seed(seed, "stand-in", episode))


def prior_source(cfg: Config, recorded: Dataset | None = None) -> tuple:
    """What played the prior, in words, and its kind: "live LLM", "recorded LLM" or "stand-in"
    (a file the stand-in made says so in its meta's source)."""
    if cfg.model:
        url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
        return f"LLM {cfg.model} at {url}", "live LLM"
    if not cfg.dataset:
        return f"scripted(noise={cfg.prior_noise:g}), a stand-in, not an LLM", "stand-in"
    if recorded is None:                         # no method of the run needed the file's rows
        recorded = load_dataset(cfg.dataset, cfg.env_id)
    source, name = recorded.meta.get("source", "unknown source"), os.path.basename(cfg.dataset)
    if str(source).startswith("scripted"):
        return f"{name}: {source} (the stand-in, not an LLM)", "stand-in"
    return f"{name}: {source} (a recorded LLM)", "recorded LLM"


def seed_window(seed: int, per_seed: int, n_available: int) -> list:
    """The episodes of a recorded file that seed `seed` takes: `per_seed` of them from episode
    seed * per_seed on, wrapping around the file's end: a window depends on its seed alone."""
    start = seed * per_seed % n_available
    return [(start + k) % n_available for k in range(per_seed)]


def make_priors(cfg: Config, spec: EnvSpec, seeds: list, log: Callable) -> tuple:
    """Step 1 for every seed: the prior's episodes, and the recorded dataset if there is one.
    Rolled out (a stand-in or an LLM) with the seed's own episodes, or cut from the dataset in
    windows of --prior-episodes (see seed_window)."""
    recorded = load_dataset(cfg.dataset, spec.env_id) if cfg.dataset else None
    n, priors = cfg.prior_episodes, {}
    if recorded is not None:
        available = len(np.unique(recorded.episode))
        if available < n:
            raise LoroError(f"{cfg.dataset} holds {available} episodes, fewer than "
                            f"--prior-episodes {n}; lower it or collect more")
    elif cfg.model and "llm" in cfg.methods:
        log(f"note: method llm asks the model at every step of the budget ({cfg.budget_steps} "
            f"steps x {cfg.seeds} seeds); to reuse answers, `collect` a dataset and pass --dataset")
    for seed in seeds:
        if recorded is not None:
            window = seed_window(seed, n, available)
            prior = recorded.select_episodes(window)
            prior.meta["window"] = window
        else:
            log(f"prior for seed {seed}: {n} episodes of {prior_source(cfg)[0]}")
            prior = collect(spec, make_chat_factory(cfg, spec, seed), n, seed, cfg.prompt_mode,
                            cfg.votes, cfg.workers, meta=dict(source=prior_source(cfg)[0]),
                            log=log if cfg.model else QUIET, max_steps=cfg.budget_steps)
        if len(prior) > cfg.budget_steps:
            raise LoroError(f"the prior's {n} episodes take {len(prior)} steps, more than "
                            f"--budget-steps {cfg.budget_steps}; raise the budget or lower "
                            f"--prior-episodes")
        priors[seed] = prior
    return priors, recorded


# --- Appendix D. The command line ----------------------------------------------------------------

def parallel_map(function: Callable, tasks: list, jobs: int):
    """function(*task) for each task, in order: here when jobs == 1 (plain tracebacks, nothing to
    pickle), else in `jobs` processes that get this process's registry (ENVS, SCRIPTED_RULES), so
    an environment registered at run time works with the "spawn" start method (macOS, Windows)."""
    if jobs == 1:
        yield from map(function, *zip(*tasks))
        return
    with concurrent.futures.ProcessPoolExecutor(jobs, initializer=share_registry,
                                                initargs=(ENVS, SCRIPTED_RULES)) as pool:
        yield from pool.map(function, *zip(*tasks))


def share_registry(envs: dict, rules: dict):             # in a worker process (parallel_map)
    ENVS.update(envs)
    SCRIPTED_RULES.update(rules)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):          # "(default: X)", unless X is None
        return action.help if action.default is None else super()._get_help_string(action)


PARSING = dict(allow_abbrev=False, formatter_class=_Help)   # --budget is not --budget-steps


class _Parser(argparse.ArgumentParser):
    def error(self, message):                    # one line (argparse's own prints the usage too)
        command = "" if self.prog == "loro.py" else " " + self.prog.split()[-1]
        self.exit(2, f"error: {message}; see `python loro.py{command} --help`\n")


# The options, as (flag, argparse settings); each sets the Config field of its name (§0).
PRIOR_OPTIONS = [
    ("--env", dict(default=Config.env_id, help=f"one of {', '.join(ENVS)}")),
    ("--prior", dict(help="a shipped dataset's model name (e.g. qwen2.5-32b), or 'scripted' for "
                          "the stand-in; default: qwen2.5-7b where shipped")),
    ("--dataset", dict(help="a recorded .npz to use as the prior")),
    ("--prior-noise", dict(type=float, help=f"the stand-in's chance of a random answer "
                                            f"(default {STAND_IN_NOISE})")),
    ("--prior-episodes", dict(type=int, default=Config.prior_episodes, help="per seed")),
    ("--seed", dict(type=int, default=Config.seed, help="the first seed"))]
RUN_OPTIONS = [
    ("--seeds", dict(type=int, default=Config.seeds, help="runs per method")),
    ("--budget-steps", dict(type=int, help="steps per run, the prior's included (default: the "
                                           "paper's)")),
    ("--eval-every", dict(type=int, default=Config.eval_every, help="steps between points")),
    ("--eval-episodes", dict(type=int, help="greedy episodes per point")),
    ("--init-untried", dict(choices=UNTRIED, default="calibrated", help="§5, ingredient 1")),
    ("--pretrain-updates", dict(type=int, help="§5, ingredient 2 (default: rows / update_every)")),
    ("--prior-share", dict(type=float, help="§5, ingredient 3: a number from 0 to 1 (default: "
                                            "the prior's rows on top)")),
    ("--alpha-scale", dict(type=float, default=Config.alpha_scale, help="x the step size")),
    ("--exploration", dict(choices=EXPLORATIONS, default=Config.exploration, help="§4")),
    ("--jobs", dict(type=int, default=min(2, os.cpu_count() or 1), help="processes")),
    ("--json", dict(help="write the results here")),
    ("--plot", dict(help="write the figure here (.png, .pdf or .svg)"))]
LLM_OPTIONS = [
    ("--model", dict(help="the model's name on the server; without it the stand-in plays")),
    ("--base-url", dict(help="e.g. http://localhost:11434/v1 (default: $OPENAI_BASE_URL, else "
                             "OpenAI)")),
    ("--api-key", dict(help="default: $OPENAI_API_KEY; local servers need none")),
    ("--temperature", dict(type=float, default=Config.temperature, help="always sent")),
    ("--max-tokens", dict(type=int, default=Config.max_tokens, help="always sent")),
    ("--llm-seed", dict(type=int, default=Config.llm_seed, help="sent as `seed`")),
    ("--timeout", dict(type=float, default=Config.timeout, help="a deadline in seconds for the "
                       "whole call (connect, send, the full reply); retried like any timeout")),
    ("--retries", dict(type=int, default=Config.retries, help="of 408/409/429/5xx and timeouts")),
    ("--prompt-mode", dict(choices=PROMPT_MODES, default=Config.prompt_mode, help="§2")),
    ("--votes", dict(type=int, default=Config.votes, help="samples per step in vote mode")),
    ("--workers", dict(type=int, default=Config.workers, help="episodes at once"))]


def _add(commands, name: str, text: str, *option_lists):
    """The command `name` with its options (lists of (flag, argparse settings))."""
    parser = commands.add_parser(name, help=text, **PARSING)
    for options in option_lists:
        for flag, settings in options:
            parser.add_argument(flag, **settings)


def config_from_args(args) -> Config:
    values = {k: v for k, v in vars(args).items()
              if k in {f.name for f in dataclasses.fields(Config)} and v is not None}
    values["env_id"] = args.env
    if isinstance(values.get("methods"), str):
        values["methods"] = tuple(m.strip() for m in values["methods"].split(",") if m.strip())
    return Config(**values).check()


def output_path(path: str | None, suffixes: tuple, flag: str) -> str | None:
    """Check an output path BEFORE the work that fills it, so a long run is never lost to a
    typo: a file name ending in one of `suffixes`, not a folder, in a folder we can write to
    (tried by creating the file and removing it again)."""
    if path is None:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LoroError(f"{flag} {path}: the folder {folder} does not exist; create it first")
    if os.path.isdir(path):
        raise LoroError(f"{flag} {path} is a folder; name a file in it, e.g. "
                        f"{os.path.join(path, 'out' + suffixes[0])}")
    if not path.lower().endswith(suffixes):
        raise LoroError(f"{flag} {path}: the file name must end in {' or '.join(suffixes)}")
    existed = os.path.exists(path)
    try:
        open(path, "ab").close()
        if not existed:
            os.remove(path)
    except OSError as error:
        raise LoroError(f"{flag} {path}: cannot write there ({error.strerror}); choose a folder "
                        f"you can write to") from None
    return path


# The range of every number a run accepts: (field, lowest, highest or inf). The replay buffer keeps
# every step of a run (about 40 bytes each), so the budget is capped at 10 million steps.
MAX_BUDGET_STEPS = 10_000_000
LIMITS = (("seeds", 1, 1000), ("seed", 0, 2**32 - 1), ("prior_episodes", 1, 100_000),
          ("eval_every", 1, MAX_BUDGET_STEPS), ("jobs", 1, 256), ("workers", 1, 256),
          ("votes", 1, math.inf), ("max_tokens", 1, math.inf), ("eval_episodes", 1, 10_000),
          ("budget_steps", 1, MAX_BUDGET_STEPS), ("pretrain_updates", 0, 10_000_000),
          ("retries", 0, 100), ("llm_seed", 0, 2**32 - 1), ("prior_noise", 0.0, 1.0),
          ("prior_share", 0.0, 1.0), ("alpha_scale", 1e-6, 1e3), ("temperature", 0.0, 2.0),
          ("timeout", 0.1, 86_400.0))


def _num(x) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def check_config(cfg: Config) -> Config:
    env_spec(cfg.env_id)
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown or not cfg.methods:
        raise LoroError(f"unknown method {','.join(unknown) or '(none)'}; choose from "
                        f"{','.join(METHODS)}")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise LoroError(f"--methods names a method twice ({','.join(cfg.methods)}); "
                        f"name each once")
    for name, low, high in LIMITS:           # every number: finite and in range
        value = getattr(cfg, name)           # None: a default filled in later
        if value is not None and not (isinstance(value, (int, float)) and
                                      math.isfinite(value) and low <= value <= high):
            span = (f"of {low} or more" if high == math.inf else
                    f"from {_num(low)} to {_num(high)}")
            why = " (the replay buffer keeps every step)" if name == "budget_steps" else ""
            raise LoroError(f"--{name.replace('_', '-')} must be a number {span}{why}, "
                            f"got {value}")
    if cfg.budget_steps is not None and cfg.budget_steps < cfg.eval_every:
        raise LoroError(f"--budget-steps ({cfg.budget_steps}) must be at least --eval-every "
                        f"({cfg.eval_every})")
    for name, allowed in (("init_untried", UNTRIED), ("exploration", EXPLORATIONS),
                          ("prompt_mode", PROMPT_MODES)):
        if getattr(cfg, name) not in allowed:
            raise LoroError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                            f"got {getattr(cfg, name)!r}")
    if cfg.prompt_mode == "vote" and (cfg.votes < 2 or cfg.temperature <= 0):
        raise LoroError("--prompt-mode vote needs --votes >= 2 and --temperature > 0 (e.g. 0.7)")
    if cfg.base_url and not cfg.model:
        raise LoroError("--base-url needs --model too (the model's name as the server knows it)")
    if cfg.base_url and not re.match(r"https?://", cfg.base_url):
        raise LoroError(f"--base-url {cfg.base_url} must start with http:// or https://")
    return cfg


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def write_outputs(args, results, figure: Callable | None = None):
    """--json, and --plot if there is a figure; both were checked before the work began
    (output_path). bench/ writes its reports with it too."""
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            json.dump(results, f, default=str)
        print(f"wrote {args.json}")
    if figure is not None and getattr(args, "plot", None):
        figure().savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")


def results_table(results: dict) -> str:
    """Methods x (cumulative reward mean ± std, split at the end of the prior's episodes; what
    the agent earned while learning; final return; own steps to the threshold), with notes on
    scaled episodes and shared data where they apply, and what each column means."""
    prior, spec = results["prior"], env_spec(results["env"])
    split = f"{np.mean(prior['steps']):.0f}" if prior["steps"] else "0"
    rows = [f"{results['env']}: budget {results['budget_steps']} steps, a point every "
            f"{results['eval_every']} steps, {results['config']['exploration']} exploration; "
            f"prior: {prior['source']}",
            f"{'method':7s} {'cumulative reward':>23s} {'prior phase':>12s} {'after it':>10s} "
            f"{'earned':>10s} {'final':>8s} "
            f"{'own steps to ' + format(results['threshold'], 'g'):>18s}"]
    for m, r in results["methods"].items():
        cumulative = np.array(r["cumulative"])
        reached = [s for s in r["own_steps_to_threshold"] if s is not None]
        steps = ("-" if m in ("llm", "random") else
                 f"{int(np.median(reached))} ({len(reached)}/{len(cumulative)})" if reached
                 else f"never (0/{len(cumulative)})")
        rows.append(f"{m:7s} {cumulative.mean():12.1f} ± {sample_std(cumulative):8.1f} "
                    f"{np.mean(r['prior_phase']):12.1f} {np.mean(r['learner_phase']):10.1f} "
                    f"{np.mean(r['earned_cumulative']):10.1f} {np.mean(r['final']):8.2f} "
                    f"{steps:>18s}")
    if prior_was_scaled(results):
        llm = results["methods"].get("llm")
        rows.append(f"note: the prior's episodes were cut before {spec.max_steps} steps; a "
                    f"point scores each at its mean reward per step x {spec.max_steps}, like a "
                    f"full episode (unscaled: prior phase {np.mean(prior['raw_prior_phase']):.1f}"
                    + (f", llm {np.mean(llm['raw_cumulative']):.1f})" if llm else ")"))
    windows = [tuple(w) for w in prior["windows"] if w]
    if len(set(windows)) < len(windows):
        rows.append(f"note: the {len(windows)} seeds take {len(set(windows))} distinct windows "
                    f"of {prior['episodes']} episodes of the file (seed s takes episodes from "
                    f"{prior['episodes']} x s on): seeds with the same window have their own "
                    f"random streams but share their data")
    rows.append(f"(cumulative reward: the sum of the greedy policy's points, the paper's protocol, "
                f"split at the end of the prior's episodes (step {split}); earned: the same sum "
                f"over the episodes the agent played, exploration included; own steps to the "
                f"threshold: the median over seeds of the learner's own steps, from its first "
                f"action (rl: step 0, mix and loro: the end of the prior's phase) to its first "
                f"point at or above the threshold, and how many seeds got there)")
    return "\n".join(rows)


def cmd_run(args):
    cfg = config_from_args(args)
    output_path(args.json, (".json",), "--json")
    output_path(args.plot, PLOT_SUFFIXES, "--plot")
    results = run_experiment(cfg)
    print(results_table(results) + "\n" + verdict(results))
    write_outputs(args, results, lambda: plot_results(results))
    return results


def cmd_collect(args):
    cfg = config_from_args(args)
    spec = env_spec(cfg.env_id)
    if not 1 <= args.episodes <= 100_000:
        raise LoroError(f"--episodes must be a number from 1 to 100,000, got {args.episodes}")
    output_path(args.out, (".npz",), "--out")
    before = os.path.getmtime(args.out) if os.path.exists(args.out) else None
    chat_for_episode, started = make_chat_factory(cfg, spec, cfg.seed), time.time()
    client = chat_for_episode(0)                 # the HTTP client, or episode 0's stand-in
    meta = dict(source=client.name, prompt=client.settings() if cfg.model else {})
    print(f"collecting {args.episodes} episodes of {spec.env_id} with {meta['source']} "
          f"({cfg.workers} at a time) into {args.out}")
    dataset = collect(spec, chat_for_episode, args.episodes, cfg.seed, cfg.prompt_mode, cfg.votes,
                      cfg.workers, out=args.out, meta=meta)
    m, returns = dataset.meta, dataset.episode_returns()
    if cfg.model:
        s, total = client.stats, m["usage"]
        print(f"LLM calls this run: {s['calls']}, "
              f"{s['prompt_tokens']} prompt + {s['completion_tokens']} completion tokens, "
              f"{s['seconds']:.1f} s waiting, {s['retries']} retries; in all, over every run of "
              f"this collection: {total['calls']} calls, {total['retries']} retries, "
              f"{total['seconds']} s")
    print(f"{len(returns)} episodes, {len(dataset)} steps, return {returns.mean():.2f} ± "
          f"{returns.std():.2f}; parsed by {m.get('parse_counts')}; fallback rate "
          f"{_amount(m.get('fallback_rate')):.1%}; {time.time() - started:.1f} s")
    if before is None or os.path.getmtime(args.out) != before:
        print(f"wrote {args.out} and {args.out}.transcript.jsonl")
    return dataset


def cmd_prompt(args):
    spec = env_spec(args.env)
    obs, _ = make_env(spec.env_id).reset(seed=Config(seed=args.seed).check().seed)
    for message in build_messages(spec, obs, args.prompt_mode):
        print(f"--- {message['role']} ---\n{message['content']}")
    return obs


def cmd_coverage(args):
    cfg = dataclasses.replace(config_from_args(args).resolved(), budget_steps=sys.maxsize)
    spec = env_spec(cfg.env_id)
    output_path(args.plot, PLOT_SUFFIXES, "--plot")
    dataset = make_priors(cfg, spec, [cfg.seed], log=QUIET)[0][cfg.seed]   # the run's first prior
    result = coverage(dataset, spec.env_id)
    print(f"{spec.env_id}: {len(dataset)} steps in {which_episodes(dataset)} of "
          f"{dataset.meta.get('source')}, mean return {dataset.episode_returns().mean():.2f}\n"
          f"the optimal policy's visits that the data covers: {result['state_action']:.1%} with "
          f"an optimal action, {result['states']:.1%} with any action; {result['covered_states']} "
          f"of the {result['optimal_states']} states it visits have an optimal action in the data")
    write_outputs(args, None, lambda: plot_coverage(dataset, spec.env_id))
    return result


# The main job, `python loro.py`: the paper's headline experiment on the paper's own data
# (CliffWalking, Qwen2.5-7B, the paper's budget) with loro's learner exploring both ways (§4),
# then the continuous-control case (Pendulum, at half the paper's budget, so that the whole job
# takes about two minutes on 2 cores).
MAIN_JOB = (("CliffWalking-v1", dict(exploration="optimistic")),
            ("CliffWalking-v1", dict(exploration="undirected")),
            ("Pendulum-v1", dict(budget_steps=20_000)))


def main_job() -> list:
    everything, paths = [], []
    for env_id, overrides in MAIN_JOB:
        name = f"loro_{env_id}_{overrides.get('exploration', 'optimistic')}.png"
        paths.append(output_path(name, PLOT_SUFFIXES, "the figure"))
    for (env_id, overrides), path in zip(MAIN_JOB, paths):
        cfg = Config(env_id=env_id, jobs=min(2, os.cpu_count() or 1), **overrides)
        print(f"{env_id}, {cfg.exploration} exploration: {', '.join(cfg.methods)}, "
              f"{cfg.seeds} seeds ...")
        results = run_experiment(cfg)
        plot_results(results).savefig(path, dpi=120, bbox_inches="tight")
        print(results_table(results) + "\n" + verdict(results) + f"\nwrote {path}\n")
        everything.append(results)
    return everything


def main(argv=None):
    parser = _Parser(prog="loro.py", description=__doc__.split("\n\n")[0], **PARSING)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add(commands, "run", "the same-budget comparison of rl, llm, mix, loro, random",
         PRIOR_OPTIONS, RUN_OPTIONS, [("--methods", dict(help=f"a subset of {','.join(METHODS)}"))],
         LLM_OPTIONS)
    _add(commands, "collect", "record a prior's episodes as a .npz dataset (resumable)",
         [("--env", dict(required=True, help="the environment")),
          ("--episodes", dict(type=int, default=Config.prior_episodes, help="to play")),
          ("--out", dict(required=True, help="the dataset file (.npz); run again to resume")),
          ("--prior-noise", dict(type=float, default=STAND_IN_NOISE, help="the stand-in's")),
          ("--seed", dict(type=int, default=Config.seed, help="of the episodes"))], LLM_OPTIONS)
    _add(commands, "prompt", "print the exact messages the model reads", PRIOR_OPTIONS[:1],
         [("--prompt-mode", dict(choices=PROMPT_MODES, default="direct", help="§2")),
          ("--seed", dict(type=int, default=0, help="of the first observation"))])
    _add(commands, "coverage", "how much of the optimal policy a prior's data covers",
         PRIOR_OPTIONS, [("--plot", dict(help="write the heat-map here (.png, .pdf or .svg)"))])
    args = parser.parse_args(argv)
    try:
        if "matplotlib.pyplot" not in sys.modules:   # the command line draws into files only
            import matplotlib
            matplotlib.use("Agg")
        if args.command is None:
            return main_job()
        return {"run": cmd_run, "collect": cmd_collect, "prompt": cmd_prompt,
                "coverage": cmd_coverage}[args.command](args)
    except (LoroError, OSError) as error:        # OSError: a full disk, a file that vanished
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit("interrupted")


# --- Appendix E. The actor-critic's networks ------------------------------------------------------
# §4's actor-critic learns with these: an MLP whose forward and backward passes are written out
# by hand (no autograd), and the Adam optimiser, both on one flat parameter vector.

class MLP:
    """`n_nets` parallel ReLU networks with a linear last layer, all weights in ONE flat vector
    (so Adam and the target-network average are a few vector operations).

    Layer l: x_{l+1} = relu(x_l @ W_l + b_l), no relu after the last layer. W_l is
    (n_nets, fan_in, fan_out); the input (B, in) is shared; the output is (n_nets, B, out).
    """

    def __init__(self, sizes: list, rng: np.random.Generator, n_nets: int = 1,
                 dtype=np.float32):
        self.shapes = [(n_nets, i, o) for i, o in zip(sizes[:-1], sizes[1:])]
        self.theta = np.zeros(sum(n * (i + 1) * o for n, i, o in self.shapes), dtype)
        self.grad = np.zeros_like(self.theta)
        self.W, self.b = self._views(self.theta)
        self.gW, self.gb = self._views(self.grad)
        for W, b in zip(self.W, self.b):         # uniform(+-1/sqrt(fan_in)), PyTorch's default
            bound = 1.0 / np.sqrt(W.shape[1])
            W[...] = rng.uniform(-bound, bound, W.shape)
            b[...] = rng.uniform(-bound, bound, b.shape)

    def _views(self, flat: np.ndarray) -> tuple:
        """Each layer's W and b as views (no copies) into consecutive slices of `flat`: layer
        after layer, W's n * i * o numbers then b's n * o. Writing to a view writes to `flat`."""
        Ws, bs, k = [], [], 0                    # k: where the next slice starts
        for n, i, o in self.shapes:
            Ws.append(flat[k:k + n * i * o].reshape(n, i, o))     # (n_nets, fan_in, fan_out)
            k += n * i * o
            bs.append(flat[k:k + n * o].reshape(n, 1, o))         # (n_nets, 1, fan_out)
            k += n * o
        return Ws, bs

    def forward(self, x: np.ndarray, first_only: bool = False) -> tuple:
        """Output (n_nets, B, out), or (1, B, out) for the first net only (the critic Q1 that the
        actor climbs), and the layer inputs (for backward)."""
        k = 1 if first_only else None            # W[:k]: the first net, or all of them
        inputs = []
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            inputs.append(x)
            x = x @ W[:k] + b[:k]
            if l < len(self.W) - 1:
                x = np.maximum(x, 0)
        return x, inputs

    def backward(self, inputs: list, dy: np.ndarray, first_only: bool = False) -> tuple:
        """Backpropagate dL/d(output) = dy. Returns (dL/dtheta as a flat vector, dL/d(input)).
        For y = x W + b: dL/dW = x^T dy, dL/db = sum over the batch of dy, dL/dx = dy W^T;
        through relu the gradient passes only where the layer's output was positive."""
        k = 1 if first_only else None
        for l in range(len(self.W) - 1, -1, -1):
            x = inputs[l]
            self.gW[l][:k] = x.swapaxes(-1, -2) @ dy
            self.gb[l][:k] = dy.sum(axis=-2, keepdims=True)
            dx = dy @ self.W[l][:k].swapaxes(-1, -2)
            if l > 0:
                dy = dx * (x > 0)                # x is the previous layer's relu output
        return self.grad, dx


class Adam:
    """Adam (Kingma & Ba 2015) on a flat parameter vector, in place:
        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,
        theta <- theta - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)."""

    def __init__(self, theta: np.ndarray, lr: float, b1=0.9, b2=0.999, eps=1e-8):
        self.theta, self.lr, self.b1, self.b2, self.eps = theta, lr, b1, b2, eps
        self.m, self.v, self.t = np.zeros_like(theta), np.zeros_like(theta), 0

    def step(self, g: np.ndarray):
        self.t += 1
        self.m += (1 - self.b1) * (g - self.m)
        self.v += (1 - self.b2) * (g * g - self.v)
        lr = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        self.theta -= lr * self.m / (np.sqrt(self.v) + self.eps)


if __name__ == "__main__":
    main()
