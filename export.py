"""Export a trained checkpoint: python export.py ckpt=PATH out=DIR

Writes a folder that sentence-transformers and transformers both load, with a model card that
holds the checkpoint's evaluation results.
"""

import hydra
from omegaconf import DictConfig

from mdr import tasks
from mdr.cli import run_cli
from mdr.config import register_resolvers

register_resolvers()  # before Hydra composes: the configs use ${project_root:}, ${minilm_path:}, ...


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig):
    return run_cli(tasks.export, cfg)


if __name__ == "__main__":
    main()
