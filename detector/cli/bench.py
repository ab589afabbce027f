"""`detector bench`: the benchmark (detector.bench)."""

from __future__ import annotations

from pathlib import Path

import click

from detector.cli.common import on_model_allocator


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-out"),
    show_default=True,
    help="scratch directory and reports",
)
@click.option("--frames", default=300, show_default=True)
@click.option("--width", default=640, show_default=True)
@click.option("--height", default=360, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--chunk-frames", default=100, show_default=True)
@click.option("--backend", default="torchvision", show_default=True)
@click.option("--model", default="fasterrcnn_mobilenet_v3_large_320_fpn", show_default=True)
@click.option("--weights", default="random", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-sweep", default="1,2,4,8,16", show_default=True)
@click.option("--chunk-sweep", default="25,50,100,300", show_default=True)
@click.option("--clients", default=50, show_default=True)
@click.option("--memory-frames", default=60, show_default=True)
@click.option(
    "--load-rounds",
    default=3,
    show_default=True,
    type=click.IntRange(1),
    help="rounds of the API load (each endpoint in turn); the report takes the median",
)
@click.option(
    "--load-seconds",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="seconds of load per endpoint and round (with wrk)",
)
def bench(
    out_dir: Path,
    frames: int,
    width: int,
    height: int,
    batch_size: int,
    chunk_frames: int,
    backend: str,
    model: str,
    weights: str,
    device: str,
    batch_sweep: str,
    chunk_sweep: str,
    clients: int,
    memory_frames: int,
    load_rounds: int,
    load_seconds: int,
) -> None:
    """Measure the pipeline: efficiency vs `detector predict`, decode, batching,
    broker bytes, overheads, worker memory, API latency under load.

    Writes bench.json and bench.png into --out and prints a table.
    """
    from detector.bench import BenchOptions, format_table, run_bench

    on_model_allocator()
    options = BenchOptions(
        out_dir=out_dir,
        frames=frames,
        width=width,
        height=height,
        batch_size=batch_size,
        chunk_frames=chunk_frames,
        backend=backend,
        model=model,
        weights=weights,
        device=device,
        batch_sweep=tuple(int(b) for b in batch_sweep.split(",") if b),
        chunk_sweep=tuple(int(c) for c in chunk_sweep.split(",") if c),
        clients=clients,
        memory_frames=memory_frames,
        load_rounds=load_rounds,
        load_seconds=load_seconds,
    )
    report = run_bench(options, log=lambda line: click.echo(line, err=True))
    click.echo(format_table(report))
    click.echo(f"report: {out_dir / 'bench.json'}, plot: {out_dir / 'bench.png'}")
