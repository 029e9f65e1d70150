"""blindsight from Python: keystores, the three kinds of collections under both schemes,
numpy errors, a collection shared with the CLI, a server started by the CLI, memory over
100 searches, and the GIL released during heavy calls."""

import os
import pathlib
import re
import subprocess
import threading
import time

import numpy as np
import pytest

import blindsight as bs

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("BLINDSIGHT_BIN", str(REPO / "target" / "debug" / "blindsight"))


def cli(home, *args):
    """Runs the CLI with `home` as its home; returns its standard output."""
    env = {**os.environ, "BLINDSIGHT_HOME": str(home)}
    env.pop("BLINDSIGHT_PASSPHRASE", None)
    out = subprocess.run([BIN, *map(str, args)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def rng(seed=0):
    return np.random.default_rng(seed)


def test_keystores_are_created_opened_and_guarded(tmp_path):
    path = tmp_path / "keys" / "keystore"
    ks = bs.Keystore.create(path, scheme="bfv", passphrase="correct horse")
    assert (ks.scheme, ks.preset) == ("bfv", "bfv-8192")
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(bs.KeystoreError, match="exists"):
        bs.Keystore.create(path)
    assert bs.Keystore.open(path, passphrase="correct horse").preset == "bfv-8192"
    with pytest.raises(bs.KeystoreError, match="passphrase"):
        bs.Keystore.open(path, passphrase="wrong")
    with pytest.raises(bs.KeystoreError, match="passphrase"):
        bs.Keystore.open(path)
    with pytest.raises(bs.Error):
        bs.Keystore.open(tmp_path / "nowhere")
    with pytest.raises(bs.InputError, match="scheme"):
        bs.Keystore.create(tmp_path / "other", scheme="rsa")
    assert issubclass(bs.KindMismatchError, bs.InputError)
    assert issubclass(bs.InputError, bs.Error)


def image_collection(tmp_path, scheme, kind, count=24):
    ks = bs.Keystore.create(tmp_path / "keys", scheme=scheme)
    photos = tmp_path / "photos"
    images = bs.write_sample_images(photos / "sub", count)
    (photos / "notes.png").write_bytes(b"this is not an image")
    col = bs.Collection.create(ks, "c", kind=kind, db=tmp_path / "g.db")
    return ks, col, images


@pytest.mark.parametrize("scheme", ["ckks", "bfv"])
@pytest.mark.parametrize("kind", ["embedding", "pixels"])
def test_images_are_ingested_and_searched(tmp_path, scheme, kind):
    _, col, images = image_collection(tmp_path, scheme, kind)
    calls = []
    report = col.ingest_dir(tmp_path / "photos", progress=lambda done, total: calls.append((done, total)))
    assert report.added == len(images)
    assert [name for name, _ in report.failed] == ["notes.png"]
    assert calls and calls[-1][1] == len(images) + 1
    assert col.kind.startswith(kind) and col.preset == f"{scheme}-8192"
    target = images[5]
    hits = col.search(target, k=5)
    assert len(hits) == 5 and [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0].name == os.path.join("sub", os.path.basename(target))
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert len(hits[0].channels) == (3 if kind == "pixels" else 1)
    thumb = hits[0].thumbnail()
    assert thumb[:2] == b"\xff\xd8", "a JPEG, retrieved privately"
    assert col.thumbnails(hits[:3])[0] == thumb
    assert hits[0].original() == pathlib.Path(target).read_bytes()
    assert col.search(pathlib.Path(target).read_bytes(), k=1)[0].id == hits[0].id
    with pytest.raises(bs.InputError):
        col.search(b"not an image")
    assert col.info()["images"] == len(images)
    assert col.delete([hits[0].id]) == 1
    assert col.compact()["purged"] == 1


@pytest.mark.parametrize("scheme", ["ckks", "bfv"])
def test_vectors_are_added_and_searched(tmp_path, scheme):
    ks = bs.Keystore.create(tmp_path / "keys", scheme=scheme)
    col = bs.Collection.create(ks, "v", kind="vectors", dim=96, model="my-model", db=tmp_path / "g.db")
    assert col.kind == "vectors:96:my-model:cosine"
    v = rng(1).standard_normal((80, 96)).astype(np.float32)
    names = [f"item {i}" for i in range(80)]
    payloads = [f"payload {i}".encode() if i % 2 else None for i in range(80)]
    report = col.add(v, names=names, payloads=payloads)
    assert (report.added, report.duplicates) == (80, 0)
    assert col.add(v[:3], names=names[:3], payloads=payloads[:3]).duplicates == 3
    query = v[7] + 0.05 * rng(2).standard_normal(96).astype(np.float32)
    hits = col.search_vector(query, k=5)
    assert hits[0].name == "item 7"
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    expected = float(unit(query.astype(np.float64)) @ unit(v[7].astype(np.float64)))
    tolerance = 1e-5 if scheme == "ckks" else 5e-3
    assert hits[0].score == pytest.approx(expected, abs=tolerance)
    assert hits[0].original() == b"payload 7"
    assert col.search_vector(query.astype(np.float64), k=1)[0].name == "item 7"
    assert col.search_vector(query[None, :], k=1)[0].name == "item 7"
    with pytest.raises(bs.KindMismatchError, match="my-model"):
        col.search_vector(query, model="another-model")


def test_numpy_dtype_shape_and_dimension_errors_are_clear(tmp_path):
    ks = bs.Keystore.create(tmp_path / "keys")
    col = bs.Collection.create(ks, "v", kind="vectors", dim=16, model="m", db=tmp_path / "g.db")
    good = rng().standard_normal((4, 16)).astype(np.float32)
    names = ["a", "b", "c", "d"]
    with pytest.raises(bs.InputError, match="int64"):
        col.add(good.astype(np.int64), names=names)
    with pytest.raises(bs.InputError, match=r"shape \(16,\)"):
        col.add(good[0], names=["a"])
    with pytest.raises(bs.InputError, match="shape"):
        col.add(good.reshape(2, 2, 16), names=names)
    with pytest.raises(bs.KindMismatchError, match="dimension 16"):
        col.add(rng().standard_normal((4, 8)).astype(np.float32), names=names)
    with pytest.raises(bs.InputError, match="3 names for 4 vectors"):
        col.add(good, names=names[:3])
    with pytest.raises(bs.InputError, match="payloads"):
        col.add(good, names=names, payloads=[None])
    bad = good.copy()
    bad[1, 3] = np.nan
    report = col.add(bad, names=names)
    assert report.added == 3 and report.failed[0][0] == "b" and "finite" in report.failed[0][1]
    with pytest.raises(bs.InputError, match="finite"):
        col.search_vector(bad[1])
    with pytest.raises(bs.KindMismatchError, match="vectors:8:m:cosine"):
        col.search_vector(np.zeros(8, dtype=np.float32) + 1)
    with pytest.raises(bs.InputError, match="shape"):
        col.search_vector(good)
    with pytest.raises(bs.InputError, match="float32"):
        col.search_vector("not an array")
    with pytest.raises(bs.InputError, match="dim"):
        bs.Collection.create(ks, "w", kind="vectors", db=tmp_path / "g.db")
    with pytest.raises(bs.InputError, match="unknown kind"):
        bs.Collection.create(ks, "w", kind="voxels", db=tmp_path / "g.db")
    images = bs.Collection.create(ks, "i", kind="pixels", db=tmp_path / "g.db")
    with pytest.raises(bs.InputError, match="made from images"):
        images.add(good, names=names)
    with pytest.raises(bs.InputError, match="your own vectors"):
        col.search(bs.write_sample_images(tmp_path / "x", 1)[0])


def test_a_collection_is_shared_between_python_and_the_cli(tmp_path):
    home = tmp_path / "home"
    keys, db = tmp_path / "keys", tmp_path / "g.db"
    _, col, images = image_collection(tmp_path, "ckks", "pixels", count=12)
    col.ingest_dir(tmp_path / "photos")
    # Python's collection, searched by the CLI
    out = cli(home, "search", images[3], "--keystore", keys, "--db", db, "--collection", "c", "--json", "--top", "1")
    assert os.path.basename(images[3]) in out
    # the CLI's collection, searched from Python
    cli(home, "create", "--vectors", "pixels", "--keystore", keys, "--db", db, "--collection", "from-cli")
    cli(home, "ingest", tmp_path / "photos" / "sub", "--keystore", keys, "--db", db, "--collection", "from-cli")
    theirs = bs.Collection.open(bs.Keystore.open(keys), "from-cli", db=db)
    assert theirs.search(images[4], k=1)[0].name == os.path.basename(images[4])
    with pytest.raises(bs.Error, match="no token"):
        bs.Collection.open(bs.Keystore.open(keys), "never-made", db=db)


def test_a_server_started_by_the_cli_is_searched_from_python_over_http(tmp_path):
    home = tmp_path / "home"
    db = tmp_path / "served.db"
    env = {**os.environ, "BLINDSIGHT_HOME": str(home)}
    server = subprocess.Popen(
        [BIN, "serve", "--db", str(db), "--listen", "127.0.0.1:0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        printed = ""
        while "admin token" not in printed:
            line = server.stdout.readline()
            assert line, f"serve stopped: {printed}"
            printed += line
        url = re.search(r"http://127\.0\.0\.1:\d+", printed).group(0)
        token = (tmp_path / "served.db.admin-token").read_text().strip()
        ks = bs.Keystore.create(tmp_path / "keys")
        with pytest.raises(bs.ServerError):
            bs.Collection.create(ks, "nope", kind="pixels", server=url, admin_token="wrong-token")
        col = bs.Collection.create(ks, "remote", kind="pixels", server=url, admin_token=token)
        images = bs.write_sample_images(tmp_path / "photos", 10)
        assert col.ingest(images).added == 10
        again = bs.Collection.open(bs.Keystore.open(tmp_path / "keys"), "remote", server=url)
        hits = again.search(images[2], k=3)
        assert hits[0].name == os.path.basename(images[2])
        assert hits[0].thumbnail()[:2] == b"\xff\xd8"
    finally:
        server.terminate()
        server.wait(timeout=30)


def rss_bytes():
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_hundred_searches_leave_memory_flat(tmp_path):
    ks = bs.Keystore.create(tmp_path / "keys")
    col = bs.Collection.create(ks, "v", kind="vectors", dim=128, model="m", db=tmp_path / "g.db")
    v = rng(3).standard_normal((500, 128)).astype(np.float32)
    col.add(v, names=[str(i) for i in range(500)])
    for i in range(10):
        col.search_vector(v[i], k=10)
    before = rss_bytes()
    for i in range(100):
        assert col.search_vector(v[i], k=10)[0].name == str(i)
    grown = rss_bytes() - before
    assert grown < 24 << 20, f"RSS grew {grown / 1e6:.1f} MB over 100 searches"


def test_a_search_in_one_thread_does_not_block_another(tmp_path):
    ks = bs.Keystore.create(tmp_path / "keys")
    col = bs.Collection.create(ks, "v", kind="vectors", dim=512, model="m", db=tmp_path / "g.db")
    v = rng(4).standard_normal((4000, 512)).astype(np.float32)
    col.add(v, names=[str(i) for i in range(4000)])
    started = time.perf_counter()
    col.search_vector(v[0], k=10)
    one = time.perf_counter() - started
    done = threading.Event()

    def searches():
        for i in range(3):
            col.search_vector(v[i], k=10)
        done.set()

    worker = threading.Thread(target=searches)
    worker.start()
    # this thread keeps running meanwhile: no gap as long as a search
    longest, last, ticks = 0.0, time.perf_counter(), 0
    while not done.is_set():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
        ticks += 1
    worker.join()
    assert one > 0.02, f"a search took {one:.3f} s: too short to tell"
    assert longest < one / 2, f"this thread stalled {longest:.3f} s during searches of {one:.3f} s"
    assert ticks > 1000


def test_embed_image_gives_the_embedding_collections_features(tmp_path):
    image = bs.write_sample_images(tmp_path / "p", 1)[0]
    emb = bs.embed_image(image)
    assert emb.dtype == np.float32 and emb.shape == (1280,)
    assert float(np.linalg.norm(emb)) == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(emb, bs.embed_image(pathlib.Path(image).read_bytes()))
    with pytest.raises(bs.InputError):
        bs.embed_image(b"not an image")


def test_the_examples_run_or_say_what_they_need(tmp_path):
    examples = REPO / "python" / "examples"
    out = subprocess.run(
        [os.sys.executable, str(examples / "vectors_search.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "1. " in out.stdout and "thumbnails retrieved privately" in out.stdout
    clip = subprocess.run(
        [os.sys.executable, str(examples / "text_to_image_clip.py")],
        capture_output=True, text=True, timeout=600,
    )
    if clip.returncode != 0:
        # no CLIP model here: it must say what it needs
        assert "pip install sentence-transformers" in clip.stderr, clip.stderr
