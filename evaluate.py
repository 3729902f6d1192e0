"""Zero-shot evaluation: python evaluate.py model=labse eval=xquad_r  |  python evaluate.py ckpt=PATH model=...

Prints the result table and X -> Y matrix, and writes results.json into the run folder.
"""

import hydra
from omegaconf import DictConfig

from src.pipeline import run_cli, evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_cli(evaluate, cfg)


if __name__ == "__main__":
    main()
