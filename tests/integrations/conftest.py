"""The pipeline tests' fixtures (seeded weights, real workers), for these tests too."""

from tests.pipeline.conftest import e2e_video, seeded_weights, workers_factory  # noqa: F401
