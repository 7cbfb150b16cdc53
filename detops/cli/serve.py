"""``detops serve``: a registered detector behind MLflow's model server (``POST /invocations``)."""

from __future__ import annotations

import typer


def serve(
    target: str = typer.Argument(
        ...,
        metavar="VARIANT|URI",
        help="A variant (serves models:/detops-VARIANT@champion), a models:/ URI, or a model URI/directory.",
    ),
    port: int = typer.Option(5001, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    workers: int = typer.Option(1, "--workers", help="Server worker processes (each loads the model)."),
) -> None:
    """Serve a registered detector with mlflow models serve --env-manager local on the settings'
    registry: POST encoded images (base64, MLflow's dataframe_split JSON) to /invocations, get boxes in
    the original pixels, scores and class names back. Ctrl-C stops it."""
    from detops.registry.serve import run_server, serve_command, serve_env, served_uri, served_version
    from detops.settings import get_settings

    settings = get_settings()
    uri = served_uri(target)
    command = serve_command(uri, host=host, port=port, workers=workers)
    found = served_version(uri, settings=settings)
    what = f"{uri} ({found[0]} version {found[1]})" if found else uri
    typer.echo(f"serving {what} at http://{host}:{port}/invocations (Ctrl-C to stop)", err=True)
    code = run_server(command, env=serve_env(settings))
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the root app."""
    app.command("serve")(serve)
