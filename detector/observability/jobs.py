"""``detector_jobs{status}``: the jobs in the database by status, counted at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from detector.db import db
from detector.models import Job, JobStatus

log = logging.getLogger(__name__)


class JobsCollector:
    """``detector_jobs{status}``: a ``GROUP BY status`` over the jobs table at scrape time.

    Every status has a sample (0 when no job has it). ``detector_jobs_database_up``
    is 0 when the query failed, so a database outage does not break the scrape.
    """

    def describe(self) -> Iterable[Metric]:
        return [self._jobs(), self._up()]

    @staticmethod
    def _jobs() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "detector_jobs", "Jobs in the database by status, counted at scrape time.", labels=["status"]
        )

    @staticmethod
    def _up() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "detector_jobs_database_up", "1 if the jobs count query of this scrape succeeded."
        )

    def collect(self) -> Iterable[Metric]:
        jobs, up = self._jobs(), self._up()
        counts = {member.value: 0 for member in JobStatus}
        try:
            rows = db.session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            for found, count in rows:
                counts[JobStatus(found).value] = int(count)
        except Exception as exc:  # the database may be down; the rest of the scrape is still good
            log.warning("metrics: counting jobs failed: %s", exc)
            up.add_metric([], 0)
            return [jobs, up]
        finally:
            db.session.remove()
        for status, count in counts.items():
            jobs.add_metric([status], count)
        up.add_metric([], 1)
        return [jobs, up]
