"""The stack tubesum replaces, as a benchmark: a Celery five-task chain on the same RabbitMQ and
PostgreSQL, for `tubesum bench pipeline` to be compared with side by side.

Each video goes discover -> download -> extract -> transcribe -> summarize as Celery tasks
(acks_late, JSON, no result backend: a chain carries its next link in the message), and every task
records the video's new status in PostgreSQL with one UPDATE, as the seed's Python service did.
The stage work is nothing, as in `tubesum bench pipeline`.

    .venv-reference/bin/python scripts/reference/celery_pipeline.py --videos 1000

starts `celery worker` (prefork, --concurrency 2 by default) on queues of the run's own, submits
one channel of N videos, waits until every video is summarized, and prints videos/s and the CPU
each process spent. Installed by scripts/reference/setup.sh. Settings from the environment:
REFERENCE_AMQP_URL (amqp://guest:guest@127.0.0.1:5672//) and REFERENCE_DATABASE_URL
(postgresql://postgres@127.0.0.1:5432/tubesum_bench).
"""

import argparse
import os
import subprocess
import sys
import time
import uuid

import psycopg
import psycopg.sql
from celery import Celery, chain

AMQP_URL = os.environ.get("REFERENCE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
DATABASE_URL = os.environ.get("REFERENCE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/tubesum_bench")
QUEUE = os.environ.get("REFERENCE_QUEUE", "reference")
STAGES = [("download", "downloaded"), ("extract", "audio_extracted"), ("transcribe", "transcribed"),
          ("summarize", "summarized")]

app = Celery("celery_pipeline", broker=AMQP_URL)
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_connection = None


def db():
    """One autocommitting connection per process (Celery or gunicorn worker)."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(DATABASE_URL, autocommit=True)
    return _connection


SCHEMA = """
CREATE TABLE IF NOT EXISTS reference_jobs (
    job_id uuid PRIMARY KEY, channel_id text NOT NULL, status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS reference_videos (
    job_id uuid NOT NULL REFERENCES reference_jobs ON DELETE CASCADE, video_id text NOT NULL,
    title text NOT NULL, status text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, video_id));
"""


def ensure_database():
    """Creates the database REFERENCE_DATABASE_URL names if it is missing (as `createdb` would)."""
    try:
        psycopg.connect(DATABASE_URL).close()
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e):
            raise
        name = psycopg.conninfo.conninfo_to_dict(DATABASE_URL)["dbname"]
        with psycopg.connect(DATABASE_URL, dbname="postgres", autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


def set_status(job_id, video_id, status):
    db().execute(
        "UPDATE reference_videos SET status = %s, updated_at = now() WHERE job_id = %s AND video_id = %s",
        (status, job_id, video_id),
    )


def add_videos(conn, job_id, videos):
    """Records `videos` synthetic videos of the job, as `tubesum bench` names them; returns their ids."""
    ids = [f"bench{i:06}" for i in range(videos)]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO reference_videos (job_id, video_id, title, status) VALUES (%s, %s, %s, 'discovered')",
            [(job_id, v, f"video {i}") for i, v in enumerate(ids)],
        )
    return ids


@app.task(name="discover")
def discover(job_id, videos):
    ids = add_videos(db(), job_id, videos)
    db().execute("UPDATE reference_jobs SET status = 'running', updated_at = now() WHERE job_id = %s", (job_id,))
    for video_id in ids:
        chain(*(globals()[name].si(job_id, video_id) for name, _ in STAGES)).apply_async()


def stage_task(name, status):
    def run(job_id, video_id):
        set_status(job_id, video_id, status)

    run.__name__ = name
    return app.task(name=name)(run)


for _name, _status in STAGES:
    globals()[_name] = stage_task(_name, _status)


def cpu_seconds():
    """CPU time (user + system) of every process on the box, by command name (kernel threads by
    family), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    spent = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")].split("/")[0]  # kworker/0:1-events: kworker
        fields = stat[stat.rindex(")") + 2:].split()
        spent[name] = spent.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return spent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    args = parser.parse_args()

    ensure_database()
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(SCHEMA)
        job_id = uuid.uuid4()
        conn.execute("INSERT INTO reference_jobs (job_id, channel_id, status) VALUES (%s, %s, 'queued')",
                     (job_id, "UCbenchbenchbenchbenchbe"))

        queue = f"reference-{job_id.hex}"
        env = dict(os.environ, REFERENCE_QUEUE=queue, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_pipeline", "worker", "--loglevel", "WARNING",
             "--pool", "prefork", "--concurrency", str(args.concurrency), "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-Q", queue],
            env=env,
            stdout=subprocess.DEVNULL,  # its banner; warnings and errors go to stderr
        )
        try:
            app.conf.task_default_queue = queue
            before = cpu_seconds()
            started = time.monotonic()
            discover.apply_async((str(job_id), args.videos), queue=queue)
            last, last_change = -1, time.monotonic()
            while True:
                done = conn.execute(
                    "SELECT count(*) FROM reference_videos WHERE job_id = %s AND status = 'summarized'", (job_id,)
                ).fetchone()[0]
                if done == args.videos:
                    break
                if done != last:
                    last, last_change = done, time.monotonic()
                elif time.monotonic() - last_change > 120:
                    sys.exit(f"no progress for 120 s ({done} of {args.videos} videos summarized)")
                if worker.poll() is not None:
                    sys.exit(f"the celery worker exited with {worker.returncode}")
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            after = cpu_seconds()
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        conn.execute("DELETE FROM reference_jobs WHERE job_id = %s", (job_id,))

    print(f"celery (reference): {args.videos} videos in {elapsed:.2f} s")
    print(f"  {args.videos / elapsed:.1f} videos/s")
    spent = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
    total = sum(s for s, _ in spent if s > 0)
    cores = os.cpu_count()
    print(f"  CPU by process over the run ({total:.1f} s of {cores * elapsed:.1f} s on {cores} cores):")
    for seconds, name in spent[:8]:
        if seconds > 0:
            print(f"    {name:<16} {seconds:>7.2f} s  {100 * seconds / total:>5.1f} %")


if __name__ == "__main__":
    main()
