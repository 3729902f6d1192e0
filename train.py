"""Train a multilingual retriever: python train.py [sampler=xx

xy|hybrid|en_en|mixed] [model=...] [...]|See README.md for the config groups; `python train.py --help` lists them.
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
