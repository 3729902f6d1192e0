"""The paper's Table 1 (mAP) and Table 2 (rank distance) layout, filled from a sweep folder.

In:  the jobs of a sweep (``mdr.sweep.read_jobs``).
Out: DataFrames with one row per (model family, batching), as the paper orders them, and, per
     benchmark and setting, our figure and the published one (``mdr.reference``). Used by
     ``notebooks/paper_tables.ipynb``.
"""

from __future__ import annotations

import pandas as pd

from mdr.reference.published import model_family, reference

BATCHING = {"xx": "X-X", "xy": "X-Y", "hybrid": "hybrid"}
TABLE1 = [("xquad_r", "XQuAD-R"), ("mlqa_r", "MLQA-R")]
SETTINGS = [("monolingual_map", "Mo"), ("crosslingual_map", "Cr"), ("multilingual_map", "Mul")]


def _ours(jobs) -> dict[tuple[str, str], dict]:
    """(family, batching) -> results of the last job with that model family and sampler."""
    out = {}
    for job in jobs:
        if job.ok:
            key = (model_family(job.record.get("model")) or job.record.get("model"), job.record.get("choices", {}).get("sampler"))
            out[key] = job.record["results"]
    return out


def paper_tables(jobs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Table 1: mAP per benchmark and setting; Table 2: rank distance), ours and published."""
    ours = _ours(jobs)
    published = {(r["model"], r["batching"]): r for r in reference()["rows"]}
    keys = [k for k in published if k in ours] + [k for k in ours if k not in published]
    rows1, rows2 = [], []
    for family, sampler in keys:
        mine, paper = ours.get((family, sampler), {}), published.get((family, sampler), {})
        label = {"model": family, "batching": BATCHING.get(sampler, sampler)}
        row1, row2 = dict(label), dict(label)
        for bench, title in TABLE1:
            for metric, short in SETTINGS:
                row1[f"{title} {short}"] = mine.get(bench, {}).get(metric)
                row1[f"{title} {short} (paper)"] = paper.get(bench, {}).get(metric)
            row2[f"{title}"] = mine.get(bench, {}).get("rank_distance")
            row2[f"{title} (paper)"] = paper.get(bench, {}).get("rank_distance")
        rows1.append(row1)
        rows2.append(row2)
    return pd.DataFrame(rows1), pd.DataFrame(rows2)
