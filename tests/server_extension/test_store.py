"""The job store: a database made by an older release is upgraded in place, rows kept."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from server_extension.jobs.store import MIGRATIONS, Store


def test_an_older_database_is_upgraded_in_place_and_keeps_its_jobs(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")  # the schema before kept outputs
        connection.execute(
            text(
                "INSERT INTO jobs (job_id, owner, name, input_path, snapshot_path, flavor,"
                " parameters, environment, max_retries, output_formats, tags, status, attempts,"
                " create_time) VALUES (:id, 'alice', 'old', 'nb.ipynb',"
                " '.ai-console/jobs/x/input.ipynb', '2C-4G', '{}', '{}', 0, '[]', '[]',"
                " 'COMPLETED', 1, 1)"
            ),
            {"id": "0" * 32},
        )
    engine.dispose()

    store = Store(url)
    [job] = store.all()
    assert (job.owner, job.name, job.status) == ("alice", "old", "COMPLETED")
    assert store.kept_output(job.job_id, "output.ipynb") is None
    store.keep_output(job.job_id, "output.ipynb", b"first")
    store.keep_output(job.job_id, "output.ipynb", b"second")  # a retry sends again
    assert store.kept_output(job.job_id, "output.ipynb") == b"second"
    store.close()
