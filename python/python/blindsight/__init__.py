"""blindsight: encrypted image similarity search from Python.

Your images (or your own vectors) are encrypted here with homomorphic encryption (BFV or
CKKS); an untrusted server stores them and scores an encrypted query against all of them
without seeing any image, query or score; the scores are decrypted and ranked here, and the
results' thumbnails come by private retrieval (the server does not learn which matched).

    import blindsight as bs
    ks = bs.Keystore.create("keys", scheme="ckks")
    col = bs.Collection.create(ks, "photos", kind="embedding", db="gallery.db")
    col.ingest_dir("photos/", progress=True)
    hits = col.search("query.jpg", k=10)
    thumb = hits[0].thumbnail()

The keystore and store files are the CLI's own: a collection made here is searched by
`blindsight search` and the other way round.
"""

from ._blindsight import (
    Collection,
    Error,
    Hit,
    IngestReport,
    InputError,
    Keystore,
    KeystoreError,
    KindMismatchError,
    ServerError,
    __version__,
    embed_image,
    write_sample_images,
)

__all__ = [
    "Collection",
    "Error",
    "Hit",
    "IngestReport",
    "InputError",
    "Keystore",
    "KeystoreError",
    "KindMismatchError",
    "ServerError",
    "__version__",
    "embed_image",
    "write_sample_images",
]
