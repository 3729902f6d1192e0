"""Training data (config groups ``data``, ``sampler``, ``corpus``): the (example x language) index,
the batch samplers (``samplers``: the paper's X-X / X-Y / hybrid strategies; ``batch_sampler``:
what they share), the LightningDataModule, and corpora built from public datasets (``sources``)."""
