"""Text-to-image search over encrypted photos, with a CLIP model you install.

CLIP puts images and sentences in one vector space: the photos' CLIP vectors go into a
blindsight "vectors" collection (encrypted; the server never sees them), and a sentence's
CLIP vector is the encrypted query. blindsight ships no text model; this example uses
sentence-transformers' "clip-ViT-B-32", loaded offline. What it needs:

    pip install sentence-transformers pillow
    # once, with network: python -c "from sentence_transformers import SentenceTransformer as S; S('clip-ViT-B-32')"

    python examples/text_to_image_clip.py PHOTO_FOLDER "a dog on a beach" [more queries...]

Without a folder it uses the sample images blindsight ships (Twemoji), e.g. "a red flag".
"""

import os
import pathlib
import sys
import tempfile

import numpy as np

import blindsight as bs

MODEL = "clip-ViT-B-32"
NEEDS = f"""this example needs a CLIP model available offline:
    pip install sentence-transformers pillow
    python -c "from sentence_transformers import SentenceTransformer as S; S('{MODEL}')"
(the second line downloads the model once; afterwards it runs without network)"""


def load_clip():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from PIL import Image
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise SystemExit(f"{NEEDS}\n(missing: {e.name})") from None
    try:
        return SentenceTransformer(MODEL), Image
    except Exception as e:  # the model is not in the local cache
        raise SystemExit(f"{NEEDS}\n(could not load {MODEL}: {e})") from None


def main() -> None:
    model, Image = load_clip()
    args = sys.argv[1:]
    with tempfile.TemporaryDirectory() as d:
        work = pathlib.Path(d)
        if args and pathlib.Path(args[0]).is_dir():
            folder, queries = pathlib.Path(args[0]), args[1:]
        else:
            folder, queries = work / "samples", args
            bs.write_sample_images(folder, 300)
        queries = queries or ["a red flag", "a smiling face", "an animal"]
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
        vectors = model.encode([Image.open(p).convert("RGB") for p in paths], convert_to_numpy=True)
        ks = bs.Keystore.create(work / "keys")
        col = bs.Collection.create(
            ks, "photos-clip", kind="vectors", dim=vectors.shape[1], model=MODEL, db=work / "store.db"
        )
        col.add(vectors.astype(np.float32), names=[str(p.relative_to(folder)) for p in paths],
                payloads=[p.read_bytes() for p in paths])
        for text in queries:
            query = model.encode([text], convert_to_numpy=True)[0].astype(np.float32)
            hits = col.search_vector(query, k=5, model=MODEL)
            print(f"\n{text!r}:")
            for h in hits:
                print(f"  {h.rank}. {h.name:40} cosine {h.score:.3f}")


if __name__ == "__main__":
    main()
