"""`detector bench`: the benchmark (detector.bench).

Its options are made from the fields of `BenchOptions`, where each is declared
with its default and help text.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

import click

from detector.bench.options import BenchOptions
from detector.cli.common import on_model_allocator


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While inside, SIGTERM (a timeout, say) exits through the ``finally`` blocks,
    so the benchmark stops the service's processes on its way out."""

    def exit_now(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _int_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected whole numbers separated by commas, got {value!r}") from None


def _str_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def click_option(f: Field[Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The command-line option of one field of `BenchOptions`."""
    flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
    default = f.default
    kwargs: dict[str, Any] = {"default": default, "show_default": True, "help": f.metadata["help"]}
    if isinstance(default, bool):
        name = flag.removeprefix("--")
        return click.option(f"--{name}/--no-{name}", f.name, **kwargs)
    if isinstance(default, tuple):
        split = _int_list if all(isinstance(v, int) for v in default) else _str_list
        kwargs.update(default=",".join(str(v) for v in default), type=str, callback=split)
    elif isinstance(default, Path):
        kwargs["type"] = click.Path(file_okay=False, path_type=Path)
    elif f.metadata.get("choices"):
        kwargs["type"] = click.Choice(f.metadata["choices"])
    elif isinstance(default, int) and f.metadata.get("minimum") is not None:
        kwargs["type"] = click.IntRange(f.metadata["minimum"])
    else:
        kwargs["type"] = type(default)
    return click.option(flag, f.name, **kwargs)


def bench_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per field of `BenchOptions`, in the fields' order."""
    for f in reversed(fields(BenchOptions)):
        command = click_option(f)(command)
    return command


@click.command()
@bench_options
def bench(**values: Any) -> None:
    """Measure the pipeline: efficiency vs `detector predict`, decode, batching,
    broker bytes, overheads, a sampled job against a full one, tracking, exports
    (speed and the API's memory), renders, worker memory, API latency under load,
    the CPU runtimes side by side, a short job's wait behind a long one, the
    2021 prototype's loop against `detector predict`, the bytes each chunk reads
    from a bucket (`--figure storage` alone), and a long video's stages and the
    service's peak memory beside a shorter one's (`--figure long-video` runs that
    figure alone).

    Writes bench.json and bench.png into --out and prints a table.
    """
    from detector.bench.report import format_table
    from detector.bench.run import run_bench

    options = BenchOptions(**values)
    if options.figure == "long-video" and not options.long_video_seconds:
        raise click.UsageError("--figure long-video needs at least one --long-video-seconds")
    on_model_allocator()
    with _sigterm_exits():
        report = run_bench(options, log=lambda line: click.echo(line, err=True))
    click.echo(format_table(report))
    click.echo(f"report: {options.out_dir / 'bench.json'}, plot: {options.out_dir / 'bench.png'}")
