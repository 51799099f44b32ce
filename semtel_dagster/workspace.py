"""Runs that belong to the code location: launched the way the UI launches them, executed here.

A run made by ``execute_in_process`` records no code location, so the UI cannot re-execute it and
leaves it out of the job's Runs tab and the Overview timeline. Here the run is created from the
location's remote job (the ``semtel`` location that ``workspace.yaml`` and ``dg dev`` load), then
executed in this process with the job's own executor: a ``semtel demo`` run is one the UI can open,
re-execute and backfill around, at in-process speed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import DagsterInstance
from dagster._core.execution.api import JobExecutionResult, execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.external import RemoteJob
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import BaseWorkspaceRequestContext, WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._utils.hosted_user_process import recon_job_from_origin

CODE_LOCATION = "semtel"  # location_name in workspace.yaml; the UI finds a run's location by this name
DEFINITIONS_MODULE = "semtel_dagster.definitions"
REPOSITORY = "__repository__"  # the repository a Definitions object becomes
JOB = "weekly_pipeline"


@contextmanager
def code_location(instance: DagsterInstance) -> Iterator[BaseWorkspaceRequestContext]:
    """The ``semtel`` code location loaded in this process (no gRPC server), as a workspace request context."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=os.getcwd()),
        location_name=CODE_LOCATION,
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process:
        yield process.create_request_context()


def remote_job(workspace: BaseWorkspaceRequestContext, job_name: str = JOB) -> RemoteJob:
    return workspace.get_code_location(CODE_LOCATION).get_repository(REPOSITORY).get_full_job(job_name)


# The run's console shows the stages' own log lines; every event is still stored in the instance.
CONSOLE_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def launch_week(
    instance: DagsterInstance, workspace: BaseWorkspaceRequestContext, week: str, run_config: dict = CONSOLE_INFO
) -> JobExecutionResult:
    """Create the week's run of the weekly job from the code location and execute it here."""
    job = remote_job(workspace)
    recon = recon_job_from_origin(job.get_python_origin())
    run = instance.create_run_for_job(
        job_def=recon.get_definition(),
        run_config=run_config,
        tags={**job.tags, PARTITION_NAME_TAG: week},
        remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
    )
    return execute_run(recon, run, instance)
