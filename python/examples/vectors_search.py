"""Encrypted search over vectors you bring, runnable anywhere.

It makes its own vectors (blindsight's image model on the sample images it ships, as you
would with CLIP or any embedding model), adds them to a "vectors" collection with each
image as the payload, and searches it with an edited copy's vector: everything the server
stores and scores is encrypted; the results' thumbnails come by private retrieval.

    python examples/vectors_search.py [WORKDIR]
"""

import sys
import tempfile
import pathlib

import numpy as np

import blindsight as bs


def main(work: pathlib.Path) -> None:
    images = bs.write_sample_images(work / "images", 120)
    vectors = np.stack([bs.embed_image(p) for p in images]).astype(np.float32)
    names = [pathlib.Path(p).name for p in images]
    payloads = [pathlib.Path(p).read_bytes() for p in images]

    ks = bs.Keystore.create(work / "keys", scheme="ckks")
    col = bs.Collection.create(
        ks, "my-vectors", kind="vectors", dim=vectors.shape[1], model="my-model", db=work / "store.db"
    )
    report = col.add(vectors, names=names, payloads=payloads)
    print(f"added {report.added} vectors of dimension {vectors.shape[1]} in {report.seconds:.2f} s")

    # a query vector: a noisy copy of vector 42 (as a second photo of the same thing would be)
    noise = np.random.default_rng(0).standard_normal(vectors.shape[1]).astype(np.float32)
    query = vectors[42] + 0.3 * np.linalg.norm(vectors[42]) * noise / np.linalg.norm(noise)
    hits = col.search_vector(query, k=5)
    for h in hits:
        print(f"{h.rank}. {h.name:24} cosine {h.score:.4f}")
    assert hits[0].name == names[42], "the original is found first"
    thumbnails = col.thumbnails(hits)
    print(f"thumbnails retrieved privately: {sum(t is not None for t in thumbnails)} of {len(hits)}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(pathlib.Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(pathlib.Path(d))
