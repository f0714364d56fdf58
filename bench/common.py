"""What the benchmark scripts share: their command line, the paper's numbers, and the run that
puts rl, llm, mix, loro and random for several priors into one table. Each script imports loro
from the folder above, so `python bench/paper.py` works from anywhere."""
import argparse
import http.server
import json
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import loro  # noqa: E402  (after the path is set)

PAPER_ENVS = ("CliffWalking-v1", "CartPole-v0", "Pendulum-v1", "FrozenLake-v1", "MountainCar-v0")
# The paper's main-figure legend values (cumulative reward over the budget, Qwen2.5-7B data
# unless named), recomputed from the authors' released result caches. Its pure RL is d3rlpy's
# DoubleDQN (SAC on Pendulum); its five LORO runs reuse one pre-trained model.
PAPER_FIGURE = {
    "CliffWalking-v1": dict(rl=-41858, loro=-10436, mix=-34769, llm=-147639, llm_32b=-345380,
                            random=-412659),
    "CartPole-v0": dict(rl=24411, loro=27078, mix=23144, llm=5140, llm_32b=6840, random=3079),
    "Pendulum-v1": dict(rl=-109700, loro=-56835, mix=-109282, llm=-61966, llm_32b=-60317,
                        random=-239783),
    "FrozenLake-v1": dict(rl=75, loro=94, mix=62, llm=0, llm_32b=0, random=0),
    "MountainCar-v0": dict(rl=-57616, loro=-45453, mix=-59752, llm=-60000, llm_32b=-30000,
                           random=-60000),
}


def parser(description: str, seeds: int = 5) -> argparse.ArgumentParser:
    """The flags every script takes; a script adds its own."""
    p = argparse.ArgumentParser(description=description, allow_abbrev=False)
    p.add_argument("--seeds", type=int, default=seeds, help=f"runs per method (default {seeds})")
    p.add_argument("--budget-scale", type=float, default=1.0,
                   help="x the paper's budget of every environment (default 1)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    p.add_argument("--json", help="write the report here")
    return p


def main(p: argparse.ArgumentParser, work, argv=None):
    """Parse and check the flags, then `work(args)`, which prints its tables and returns its
    report; write --json and say how long it took and how loaded the machine was. A bad flag,
    or a run that cannot work (a budget too small for the prior), ends in one line."""
    args = p.parse_args(argv)
    try:
        loro.Config(seeds=args.seeds, jobs=args.jobs).check()
        if not 0.001 <= args.budget_scale <= 10:
            raise loro.LoroError(f"--budget-scale must be a number from 0.001 to 10, got "
                                 f"{args.budget_scale}")
        for flag, suffixes in (("json", (".json",)), ("plot", loro.PLOT_SUFFIXES)):
            loro.output_path(getattr(args, flag, None), suffixes, "--" + flag)
        print(f"{p.prog}: {args.seeds} seeds, budget x {args.budget_scale:g}, {args.jobs} "
              f"processes on {os.cpu_count()} cores; load average before: "
              f"{os.getloadavg()[0]:.2f}")
        started = time.time()
        report = work(args)
    except loro.LoroError as error:
        sys.exit(f"error: {error}")
    loro.write_outputs(args, report)             # --json (a script writes its own --plot)
    print(f"wall time {(time.time() - started) / 60:.1f} min; load average at the end "
          f"{os.getloadavg()[0]:.2f} (this run's own processes included)")
    return report


def budget(env_id: str, scale: float) -> int:
    """The paper's budget of an environment, scaled (at least one curve point)."""
    return max(loro.Config().eval_every, round(loro.env_spec(env_id).budget_steps * scale))


def compare_priors(env_id: str, priors: dict, seeds: int = 5, jobs: int = 2,
                   methods=("llm", "mix", "loro"), **common) -> dict:
    """rl and random once, then `methods` for each prior ({label: Config overrides}); `common`:
    Config settings for all runs. Returns {label: results}; rl and random are split at each
    prior's phase, so that all share one table."""
    base = loro.run_experiment(loro.Config(env_id=env_id, methods=("rl", "random"), seeds=seeds,
                                           jobs=jobs, prior=loro.STAND_IN, **common),
                               log=loro.QUIET)
    out = {}
    for label, overrides in priors.items():
        r = loro.run_experiment(loro.Config(env_id=env_id, methods=methods, seeds=seeds,
                                            jobs=jobs, **common, **overrides), log=loro.QUIET)
        points = np.array(r["checkpoints"])
        for m, b in base["methods"].items():
            split = [loro.summarize(np.array(c), points, r["threshold"], n,
                                    loro.learner_starts(m, n))
                     for c, n in zip(b["curves"], r["prior"]["steps"])]
            r["methods"][m] = dict(b, **{k: [x[k] for x in split] for k in split[0]})
        order = (*loro.METHODS, *methods)
        r["methods"] = {m: r["methods"][m] for m in order if m in r["methods"]}
        out[label] = r
    return out


def median_steps(values: list) -> float:
    """The median over seeds, a seed that never got there counting as infinitely slow."""
    return float(np.median([np.inf if v is None else v for v in values]))


def mean_std(values) -> str:
    """mean ± the sample standard deviation over seeds, as a table cell."""
    return f"{np.mean(values):,.0f} ± {loro.sample_std(values):,.0f}"


def serve_stand_in(env_id: str, noise: float = 0.0, latency: float = 0.0, seed: int = 0):
    """An OpenAI-compatible chat server on 127.0.0.1 that answers with the scripted stand-in
    after a fixed delay: the real HTTP path with no model (for the notebook and workers.py).
    Returns (server, base_url); stop it with server.shutdown()."""
    stand_in, lock = loro.ScriptedChat(env_id, noise, seed), threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with lock:
                text = stand_in.chat(body["messages"]).text
            time.sleep(latency)
            answer = json.dumps(dict(object="chat.completion", model=body.get("model"), choices=[
                dict(index=0, message=dict(role="assistant", content=text), finish_reason="stop")],
                usage=dict(prompt_tokens=0, completion_tokens=0, total_tokens=0))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):           # keep the console quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"
