"""Issue 27's figures from Python: ingest of N × D vectors into a `vectors` collection
(vectors/s), and one search from Python beside the same search from the Rust CLI
(`blindsight search --vector --json`, its `total_s`: the same client call, timed inside),
both against one `blindsight serve` process on loopback (the same warm server).

    python scripts/python-bench.py [--count 100000] [--dim 512] [--scheme ckks] [--repeat 9]

It needs the package installed (`pip install ./python`, release) and the release binary
(`cargo build --release`). Prints one JSON object.
"""

import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import tempfile
import time

import numpy as np

import blindsight as bs

REPO = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--scheme", default="ckks")
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--bin", default=str(REPO / "target" / "release" / "blindsight"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = pathlib.Path(d)
        vectors = np.random.default_rng(7).standard_normal((a.count, a.dim)).astype(np.float32)
        names = [f"v{i}" for i in range(a.count)]
        env = {**os.environ, "BLINDSIGHT_HOME": str(work / "home")}
        server = subprocess.Popen(
            [a.bin, "serve", "--db", str(work / "served.db"), "--listen", "127.0.0.1:0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        printed = ""
        while "admin token" not in printed:
            printed += server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", printed).group(0)
        admin = (work / "served.db.admin-token").read_text().strip()
        ks = bs.Keystore.create(work / "keys", scheme=a.scheme)
        col = bs.Collection.create(ks, "bench", kind="vectors", dim=a.dim, model="bench", server=url, admin_token=admin)
        started = time.perf_counter()
        report = col.add(vectors, names=names)
        ingest_s = time.perf_counter() - started
        assert report.added == a.count, report
        query = vectors[a.count // 3] + 0.1 * np.random.default_rng(8).standard_normal(a.dim).astype(np.float32)
        np.save(work / "q.npy", query)
        # alternate Python and the CLI, `repeat` times each
        python_s, rust_s = [], []
        for _ in range(a.repeat):
            t = time.perf_counter()
            hits = col.search_vector(query, k=10)
            python_s.append(time.perf_counter() - t)
            assert hits[0].name == names[a.count // 3]
            out = subprocess.run(
                [a.bin, "search", "--vector", str(work / "q.npy"), "--keystore", str(work / "keys"),
                 "--server", url, "--collection", "bench", "--json", "--top", "10"],
                capture_output=True, text=True, env=env,
            )
            assert out.returncode == 0, out.stderr
            answer = json.loads(out.stdout)
            assert answer["matches"][0]["name"] == names[a.count // 3]
            rust_s.append(answer["timing"]["total_s"])
        server.terminate()
        server.wait(timeout=30)
        print(json.dumps({
            "count": a.count,
            "dim": a.dim,
            "scheme": a.scheme,
            "ingest_s": ingest_s,
            "ingest_per_s": a.count / ingest_s,
            "python_search_s": python_s,
            "rust_search_s": rust_s,
            "python_median_s": statistics.median(python_s),
            "rust_median_s": statistics.median(rust_s),
            "python_over_rust": statistics.median(python_s) / statistics.median(rust_s),
        }, indent=1))


if __name__ == "__main__":
    main()
