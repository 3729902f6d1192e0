"""On-disk formats that training data (``mdr.data``) and evaluation (``mdr.evaluation``) both read.

- ``parallel``: the long-format parallel question-passage schema (validation, loading);
- ``miracl``: MIRACL's topics, qrels and passage files;
- ``hub``: files from the Hugging Face Hub or a local copy in the same layout, one error policy;
- ``results``: the run folder's ``results.json`` / ``failed.txt``, written atomically;
- ``text``: text files are UTF-8, with or without a byte-order mark.

This is the lowest layer of the package beside ``mdr.errors``: it imports nothing else of ``mdr``.
"""
