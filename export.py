"""Export a trained checkpoint: python export.py ckpt=PATH out=DIR

Writes a folder that sentence-transformers and transformers both load, with a model card that
holds the checkpoint's evaluation results.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from src.pipeline import run_cli


def export(cfg: DictConfig) -> str:
    from src.export import export as export_folder

    model = OmegaConf.to_container(cfg.model, resolve=True) if cfg.model else None
    out = export_folder(cfg.ckpt, cfg.out, model)
    print(f"exported {cfg.ckpt} -> {out}")
    return out


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    run_cli(export, cfg)


if __name__ == "__main__":
    main()
