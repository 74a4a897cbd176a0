"""The status API tubesum replaces, as a benchmark: `GET /jobs/<id>` in Flask + psycopg under
gunicorn, for `tubesum bench api` to be compared with side by side.

    .venv-reference/bin/python scripts/reference/flask_jobs.py --videos 1000

records one job of N videos in PostgreSQL (the tables of celery_pipeline.py), serves it with
`gunicorn -w 2` on a free port, loads `GET /jobs/<id>` with wrk as `tubesum bench api` does
(-t2 -c16 -d10s) and prints wrk's requests/s and latency percentiles. Each request reads the job
and its videos and renders them as JSON, as the seed's Python service did. Installed by
scripts/reference/setup.sh; REFERENCE_DATABASE_URL as in celery_pipeline.py.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import psycopg
from flask import Flask, abort, jsonify

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from celery_pipeline import DATABASE_URL, SCHEMA, add_videos, db, ensure_database  # noqa: E402

app = Flask(__name__)


@app.get("/jobs/<uuid:job_id>")
def job(job_id):
    conn = db()
    row = conn.execute(
        "SELECT job_id, channel_id, status, created_at, updated_at FROM reference_jobs WHERE job_id = %s", (job_id,)
    ).fetchone()
    if row is None:
        abort(404)
    videos = conn.execute(
        "SELECT video_id, title, status, updated_at FROM reference_videos WHERE job_id = %s ORDER BY video_id",
        (job_id,),
    ).fetchall()
    counts = {}
    for v in videos:
        counts[v[2]] = counts.get(v[2], 0) + 1
    return jsonify(
        job_id=str(row[0]), channel_id=row[1], status=row[2], created_at=row[3].isoformat(),
        updated_at=row[4].isoformat(), counts=counts,
        videos=[dict(video_id=v[0], title=v[1], status=v[2], updated_at=v[3].isoformat()) for v in videos],
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    wrk = shutil.which("wrk") or sys.exit("wrk is missing (Debian: apt install wrk)")

    ensure_database()
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(SCHEMA)
        job_id = uuid.uuid4()
        conn.execute("INSERT INTO reference_jobs (job_id, channel_id, status) VALUES (%s, %s, 'running')",
                     (job_id, "UCbenchbenchbenchbenchbe"))
        add_videos(conn, job_id, args.videos)
        port = free_port()
        server = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-w", str(args.workers), "-b",
             f"127.0.0.1:{port}", "--log-level", "warning", "flask_jobs:app"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        url = f"http://127.0.0.1:{port}/jobs/{job_id}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(url, timeout=5).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        sys.exit("gunicorn did not answer within 30 s")
                    time.sleep(0.1)
            out = subprocess.run(
                [wrk, "-t2", "-c16", f"-d{args.seconds}s", "--latency", url],
                check=True, capture_output=True, text=True,
            ).stdout
        finally:
            server.terminate()
            server.wait(timeout=30)
            conn.execute("DELETE FROM reference_jobs WHERE job_id = %s", (job_id,))

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
    p50 = re.search(r"50%\s+(\S+)", out).group(1)
    p99 = re.search(r"99%\s+(\S+)", out).group(1)
    print(f"GET /jobs/{{id}} of a job of {args.videos} videos, Flask + psycopg, gunicorn -w {args.workers}, "
          f"wrk -t2 -c16 -d{args.seconds}s:")
    print(f"  whole page (200): {float(rate):,.0f} req/s, p50 {p50}, p99 {p99}")


if __name__ == "__main__":
    main()
