"""Train a multilingual retriever: python train.py [sampler=xx|xy|hybrid|en_en|mixed] [model=...] [...]

See README.md for the config groups; `python train.py --help` lists them.
"""

import hydra
from omegaconf import DictConfig

from src.errors import UserError
from src.pipeline import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
