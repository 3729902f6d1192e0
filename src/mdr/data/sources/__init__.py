"""Training corpora built from public datasets (config group ``corpus``, used by ``data=mmarco``,
``data=miracl_train`` and the sources of ``data=mixture``).

Each builder takes its options, fetches the files it needs once (``mdr.formats.hub``: the hub or
a local copy in the hub's layout), and returns ``[path]`` of a cached long-format Parquet corpus
for ``data.files``.
"""
