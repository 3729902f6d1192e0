"""Zero-shot evaluation of any model, or of a trained checkpoint.

    python evaluate.py model=labse eval=xquad_r
    python evaluate.py ckpt=PATH [model=...]

Prints the result tables and writes results.json into the run folder.
"""

import hydra
from omegaconf import DictConfig

from mdr import tasks
from mdr.cli import run_cli
from mdr.config import register_resolvers

register_resolvers()  # before Hydra composes: the configs use ${project_root:}, ${minilm_path:}, ...


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig):
    return run_cli(tasks.evaluate, cfg)


if __name__ == "__main__":
    main()
