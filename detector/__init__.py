"""detector: a batch video object-detection service.

Upload a video over the REST API; Celery workers decode it in frame-range chunks,
run an object detector over every frame and store the detections per frame.
"""

__version__ = "0.1.0"
