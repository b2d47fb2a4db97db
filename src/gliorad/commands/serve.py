"""``gliorad serve --bundle DIR``: the local web service and page of :mod:`gliorad.serve`.

Registered in :mod:`gliorad.cli` with ``app.command("serve")(serve_cmd)``; ``app`` here is a
one-command typer app for tests. Only typer and the standard library are imported at module
level.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from gliorad.commands._common import exit_on_input_error

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _check_port(host: str, port: int) -> None:
    """Refuse an address that cannot be bound now (in use, or not this machine's)."""
    from gliorad.errors import GlioradInputError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise GlioradInputError(f"--host {host}: not an address of this machine ({err})") from err
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as err:
            raise GlioradInputError(f"--host {host} --port {port}: cannot listen there "
                                    f"({err.strerror}); choose another --port") from err


def serve_cmd(
    bundle: Annotated[Path, typer.Option("--bundle", help="Model bundle folder (gliorad run).")],
    host: Annotated[str, typer.Option(help="Address to listen on. Other than a loopback address "
                                           "(127.0.0.1, ::1, localhost), a token is required.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Predictions run at once (one process each, the "
                                              "bundle loaded in each); the rest wait in a queue."
                                         )] = 1,
    data: Annotated[Path | None, typer.Option(
        help="Folder for the jobs (uploads and results); kept across restarts. Default: a "
             "temporary folder removed when the service stops.")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="GLIORAD_SERVE_TOKEN",
        help="Token every API request must carry (Authorization: Bearer ...), at least 16 "
             "characters. Default: none on a loopback address, a generated one (printed) on "
             "any other.")] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload (one request), MB.")] = 1024.0,
    max_unzipped_mb: Annotated[float, typer.Option(help="Largest unpacked size of a ZIP, MB.")
                               ] = 4096.0,
    max_files: Annotated[int, typer.Option(help="Most files in a ZIP.")] = 10_000,
    time_limit: Annotated[float, typer.Option(help="Seconds one job may run before it is "
                                                   "stopped.")] = 1800.0,
    keep_hours: Annotated[float, typer.Option(help="Hours a finished job's files are kept.")
                          ] = 24.0,
    max_queue: Annotated[int, typer.Option(help="Most jobs waiting; more uploads are refused "
                                                "(503) until some finish.")] = 32,
    threads: Annotated[int | None, typer.Option(help="Torch threads per prediction process "
                                                     "(default: the cores shared out).")] = None,
) -> None:
    """Serve a web page and REST API where one patient's MRI is uploaded and its prediction
    (gliorad predict) read: grade probability, risk group, nomogram survival, a slice viewer
    with the mask. Stop with Ctrl-C."""
    from gliorad.serve.settings import ServeSettings

    with exit_on_input_error():
        settings = ServeSettings(bundle=bundle, host=host, port=port, workers=workers, data=data,
                                 token=token, max_upload_mb=max_upload_mb,
                                 max_unzipped_mb=max_unzipped_mb, max_files=max_files,
                                 time_limit_s=time_limit, keep_hours=keep_hours,
                                 max_queue=max_queue, threads=threads).checked()
        _check_port(host, port)
        import uvicorn

        from gliorad.serve.app import create_app

        application = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    typer.echo(f"gliorad serve: bundle {bundle}; {workers} prediction process(es); "
               f"jobs in {application.state.manager.root}"
               + ("" if data else " (temporary)"))
    if settings.token:
        typer.echo(f"token required; open {url}#token={settings.token}")
        if token is None:
            typer.echo("(a generated token: give --token or GLIORAD_SERVE_TOKEN to keep one "
                       "across restarts; the traffic is not encrypted: on a network, put the "
                       "service behind an HTTPS proxy)")
    else:
        typer.echo(f"open {url}  (API documentation: {url}docs)")
    uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)


app.command()(serve_cmd)
