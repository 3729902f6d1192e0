"""How often the sweep summary's verdicts are wrong, and how often they find a real difference.

Simulates per-query AP of two groups of runs (S seeds each, Q questions in L languages): every run
shifted as a whole by its seed (sd ``--seed-sd``), its per-query noise (sd ``--noise-sd``)
correlated at ``--rho`` between the translations of a question, the second group better by
``--effect``. Each simulated sweep is tested with the summary's test (``mdr.stats.seeds_and_questions``,
what ``mdr.comparison.compare`` calls on the paired rows) and with the test the tool used before
(per-query AP averaged over seeds, each query a unit); prints the share of sweeps marked at alpha.
With ``--effect 0`` that share is the false-positive rate, otherwise the power.

``--from-sweep DIR --group "sampler=xx"`` takes the seed sd, the per-query noise sd, the
within-question correlation and the per-query AP values from a finished sweep's group instead
(``--eval-set``, ``--setting``), so the rates are those of data like yours.

    python benchmarks/calibration.py                                    # the grid of docs/comparisons.md
    python benchmarks/calibration.py --questions 1000 --effect 0.02     # power at 1,000 questions
    python benchmarks/calibration.py --from-sweep outputs/train-sweep/<date_time> --group sampler=xx --effect 0.02
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import stats as scipy_stats

from mdr.comparison import groups, read_jobs
from mdr.stats import seeds_and_questions


def simulate(rng, base, questions, languages, seeds, seed_sd, noise_sd, rho, effect):
    q, lang = np.repeat(np.arange(questions), languages), np.tile(np.arange(languages), questions)
    level = rng.choice(base, len(q))
    runs = []
    for shift in (effect, 0.0):
        group = []
        for _ in range(seeds):
            noise = noise_sd * (math.sqrt(rho) * rng.normal(0, 1, questions)[q] + math.sqrt(1 - rho) * rng.normal(0, 1, len(q)))
            group.append(np.clip(level + shift + rng.normal(0, seed_sd) + noise, 0, 1))
        runs.append(np.array(group))
    return runs[0], runs[1], lang, q


def query_level_p(a, b) -> float:
    """The former procedure: seeds averaged, each query a unit (normal approximation of its sign flips)."""
    d = a.mean(0) - b.mean(0)
    return float(2 * scipy_stats.norm.sf(abs(d.sum()) / math.sqrt(np.sum(d**2))))


def from_sweep(folder: str, group_key: str, eval_set: str, setting: str) -> dict:
    """Seed sd, per-query noise sd, within-question correlation and AP values of one group of a sweep."""
    found = groups(read_jobs(folder))
    matching = [g for g in found if g.key == group_key]
    if not matching:
        raise SystemExit(f"error: no group {group_key!r} in {folder}; its groups: {[g.key for g in found]}")
    group = matching[0]
    tables = [j.per_query[(j.per_query["eval_set"] == eval_set) & (j.per_query["setting"] == setting)]
              .set_index(["query_id", "query_lang", "pool_lang"]).sort_index() for j in group.jobs]
    y = np.stack([t["ap"].to_numpy(dtype=float) for t in tables])
    questions = tables[0].index.get_level_values("query_id").to_numpy()
    residual = (y - y.mean(0)) - (y - y.mean(0)).mean(1, keepdims=True)
    noise_sd = float(np.sqrt(np.sum(residual**2) / ((len(y) - 1) * y.shape[1])))
    # within-question correlation: covariance of residual pairs from the same question over their variance
    codes = np.unique(questions, return_inverse=True)[1]
    sums = np.stack([np.bincount(codes, r) for r in residual])
    counts = np.bincount(codes)
    pair_sum = float(np.sum(sums**2 - np.stack([np.bincount(codes, r**2) for r in residual])))
    pairs = len(y) * float(np.sum(counts * (counts - 1)))
    rho = max(0.0, pair_sum / pairs / noise_sd**2) if pairs else 0.0
    seed_sd = float(np.std(y.mean(1), ddof=1))
    return {"base": y.mean(0), "seed_sd": seed_sd, "noise_sd": noise_sd, "rho": min(rho, 1.0),
            "languages": int(tables[0].index.get_level_values("query_lang").nunique()), "questions": int(len(counts))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=None)
    parser.add_argument("--languages", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-sd", type=float, default=None)
    parser.add_argument("--noise-sd", type=float, default=0.15)
    parser.add_argument("--rho", type=float, default=0.3)
    parser.add_argument("--effect", type=float, default=0.0)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--from-sweep", default=None)
    parser.add_argument("--group", default="sampler=xx")
    parser.add_argument("--eval-set", default="demo")
    parser.add_argument("--setting", default="crosslingual")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.from_sweep:
        measured = from_sweep(args.from_sweep, args.group, args.eval_set, args.setting)
        print(f"from {args.from_sweep} [{args.group}, {args.eval_set}/{args.setting}]: seed sd {measured['seed_sd']:.4f}, "
              f"per-query noise sd {measured['noise_sd']:.4f}, within-question correlation {measured['rho']:.2f}, "
              f"{measured['questions']} questions x {measured['languages']} languages")
        grid = [dict(base=measured["base"], questions=args.questions or measured["questions"],
                     languages=args.languages or measured["languages"], seed_sd=args.seed_sd if args.seed_sd is not None else measured["seed_sd"],
                     noise_sd=measured["noise_sd"], rho=measured["rho"])]
    else:
        base = rng.uniform(0.2, 0.9, 10_000)
        sds = [args.seed_sd] if args.seed_sd is not None else [0.0, 0.003, 0.005]
        grid = [dict(base=base, questions=args.questions or 300, languages=args.languages or 5, seed_sd=sd,
                     noise_sd=args.noise_sd, rho=args.rho) for sd in sds]
    print("| questions | languages | seeds | seed sd | noise sd | rho | effect | marked, seeds and questions | marked, queries only | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in grid:
        start, ours, before = time.perf_counter(), 0, 0
        for _ in range(args.replicates):
            a, b, lang, q = simulate(rng, p["base"], p["questions"], p["languages"], args.seeds, p["seed_sd"], p["noise_sd"],
                                     p["rho"], args.effect)
            ours += seeds_and_questions(a, b, cells=lang, clusters=q).p < args.alpha
            before += query_level_p(a, b) < args.alpha
        n = args.replicates
        se = lambda k: math.sqrt(k / n * (1 - k / n) / n)  # noqa: E731
        print(f"| {p['questions']} | {p['languages']} | {args.seeds} | {p['seed_sd']:.4f} | {p['noise_sd']:.3f} | {p['rho']:.2f} | "
              f"{args.effect:g} | {ours / n:.3f} ±{se(ours):.3f} | {before / n:.3f} ±{se(before):.3f} | {time.perf_counter() - start:.0f} |")


if __name__ == "__main__":
    main()
