"""The Celery pipeline: process_video -> chord(detect_frames...) -> merge_chunks.

Messages carry references (job id, chunk index, frame range), never pixels;
detections are written to the database per chunk, idempotently.
"""
