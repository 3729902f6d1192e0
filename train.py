"""Train a multilingual retriever: python train.py [sampler=xx|xy|hybrid|en_en|mixed] [model=...] [...]

See README.md for the config groups; `python train.py --help` lists them.
"""

import hydra
from omegaconf import DictConfig

from src.pipeline import run_cli, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_cli(train, cfg)


if __name__ == "__main__":
    main()
