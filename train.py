"""Train a multilingual retriever, then evaluate it zero-shot.

    python train.py [sampler=hybrid|xx|xy|en_en|mixed] [model=labse|xlmr|...] [data=...] [eval=...]
    python train.py -m sampler=xx,xy,hybrid seed=1,2,3        (a sweep, summarised at its end)

See README.md for the config groups; `python train.py --help` lists them.
"""

import hydra
from omegaconf import DictConfig

from mdr import tasks
from mdr.cli import run_cli
from mdr.config import register_resolvers

register_resolvers()  # before Hydra composes: the configs use ${project_root:}, ${minilm_path:}, ...


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    # the selection metric (summary.select_metric), so that any Hydra sweeper can optimise it
    return tasks.objective(cfg, run_cli(tasks.train, cfg))


if __name__ == "__main__":
    main()
