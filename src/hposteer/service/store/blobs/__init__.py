"""Content-addressed blob storage: sandboxes, checkpoints, metrics and dataset files.

A blob is written to a temporary file while it streams in, hashed and size-checked on the
way, fsynced, and only then renamed to its sha256 path: a 2xx answer means the bytes are on
disk, and a failed upload leaves nothing behind. Stores are plugins resolved by name
(``registry.BLOB_STORES``, setting ``blob_store``):

* ``local``: files under ``<data_dir>/blobs``. Replicas must share that directory.
* ``database``: the bytes in the database too (table ``blob_chunks``, 1 MiB rows), committed
  before the upload is answered; each process keeps a local cache under ``<data_dir>/blobs`` and
  fills it from the database on first use. Replicas then share nothing but the database.

Modules: ``base`` (what every store shares: the protocols, ``StoredBlob``, the upload errors, blob
paths), ``local`` and ``database`` (the two stores; ``database`` builds on ``local``), ``registry``
(the stores by name) and ``rows`` (the ``blobs`` table's rows).
"""
