"""Zero-shot evaluation (config group ``eval``): benchmarks behind one protocol
(``benchmark``), LAReQA-style pools (``pools``, ``lareqa``), MIRACL (``miracl``), the full-pool
metrics (``metrics``), the evaluator, the training callback and the result tables (``report``)."""
