"""Mine hard negatives, language-aware: python mine.py model=<option> [ckpt=PATH] data=<corpus> out=DIR

Writes the corpus again with its `negatives` filled (never a translation or a copy of the answer),
beside mining_record.json; train with data=parallel_files data.files=DIR/<file> data.num_hard_negatives=k.
"""

import hydra
from omegaconf import DictConfig

from mdr import tasks
from mdr.cli import run_cli
from mdr.config import register_resolvers

register_resolvers()  # before Hydra composes: the configs use ${project_root:}, ${minilm_path:}, ...


@hydra.main(version_base="1.3", config_path="conf", config_name="mine")
def main(cfg: DictConfig):
    return run_cli(tasks.mine, cfg)


if __name__ == "__main__":
    main()
