"""`iehub deploy up|down|status`: the command line of `iehub.deploy` (a whole Airflow deployment on one machine)."""
from __future__ import annotations

import json

import click

from iehub.config import Settings


@click.group()
def deploy() -> None:
    """Start, stop or inspect an evaluation deployment of Airflow (processes and logs under IEHUB_HOME/deploy)."""


@deploy.command()
@click.option("--workers", default=2, show_default=True, help="Celery workers, each with its own IEHUB_HOME.")
@click.option("--executor", type=click.Choice(["celery", "local"]), default="celery", show_default=True)
@click.option("--port", default=8080, show_default=True, help="The api-server's port on 127.0.0.1.")
@click.option("--concurrency", default=2, show_default=True, help="Task slots per worker.")
@click.pass_obj
def up(settings: Settings, workers: int, executor: str, port: int, concurrency: int) -> None:
    """Start scheduler, dag-processor, api-server and the workers; return once the API answers."""
    from iehub import deploy as deployment

    try:
        dep = deployment.up(settings, workers, executor, port, concurrency)
    except deployment.DeployError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"up: {', '.join(dep.processes)}; API and UI at {dep.api_url}; logs in {deployment.deploy_dir(settings)}")


@deploy.command()
@click.pass_obj
def down(settings: Settings) -> None:
    """Terminate every process of the deployment and wait for them."""
    from iehub import deploy as deployment

    click.echo(f"stopped: {', '.join(deployment.down(settings)) or 'nothing was running'}")


@deploy.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Which processes run and whether the api-server answers (JSON)."""
    from iehub import deploy as deployment

    click.echo(json.dumps(deployment.status(settings), indent=1))


def register(main: click.Group) -> None:
    main.add_command(deploy)
