"""The model side (config groups ``model`` and ``loss``, the ``optim`` section): the shared encoder,
InfoNCE, GradCache, the LightningModule, checkpoint loading and export."""
