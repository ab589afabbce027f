"""The pipeline tests' fixtures (seeded weights, the end-to-end video, real workers),
for the analytics' end-to-end test."""

from tests.pipeline.conftest import e2e_video, seeded_weights, workers_factory  # noqa: F401
