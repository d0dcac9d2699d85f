"""``split_models_job``: the model stage of one split partition, run on a Dask cluster
through Dagster's Dask executor (dagster-dask).

Each run trains and ranks one split (``perturbagen_split``, ``normalization_stats``,
``embedding_model``, ``evaluation_ranks``); a backfill of several split partitions is one run
per split, and their steps run side by side on the cluster's workers. Where the steps run:

* by default a local Dask cluster of the run's own (one worker process, 127.0.0.1, no
  dashboard): the same as the default executor, in a separate process;
* ``L1000_DASK_SCHEDULER=tcp://host:8786``: the existing cluster behind that scheduler, shared
  by every run (one training per worker thread). Workers can be anything Dask starts:
  ``dask worker`` on more machines, dask-jobqueue on Slurm or PBS, dask-kubernetes (set-ups in
  the README). The run's launchpad config can also pick one of dagster-dask's cluster types
  (``local``, ``existing``, ``slurm``, ``pbs``, ``kube``...) per run.
* ``L1000_DASK_TRAINING_RESOURCES='{"GPU": 1}'``: ``embedding_model`` steps only run on workers
  started with that Dask resource (``dask worker --resources GPU=1``): one training per GPU.

The ``training`` pool (``dagster_home/dagster.yaml``, limit 1) still holds: raise it to the
number of trainings the cluster can run at once (``dagster instance concurrency set training
N``, or Deployment > Concurrency in the UI), or the runs train one at a time.
"""

import json
import os
from dataclasses import dataclass

import dagster as dg
from dagster_dask.executor import DaskExecutor, dask_executor, get_dask_resource_requirements

from l1000_assets.lib.keys import (
    EMBEDDING_MODEL,
    EVALUATION_RANKS,
    NORMALIZATION_STATS,
    PERTURBAGEN_SPLIT,
)
from l1000_assets.lib.partitions import split_partitions

DASK_SCHEDULER_ENV = "L1000_DASK_SCHEDULER"
DASK_TRAINING_RESOURCES_ENV = "L1000_DASK_TRAINING_RESOURCES"
LOCAL_CLUSTER = {"n_workers": 1, "processes": True, "host": "127.0.0.1", "dashboard_address": None}
"""dagster-dask's ``local`` cluster here: one worker process on the loopback interface."""


@dataclass(frozen=True)
class _StepOnWorker:
    """What a Dask worker needs to run one step: one opaque object, so that Dask does not
    walk into Dagster's records (it iterates tuples, and a run's records refuse iteration)."""

    recon_job: object
    run_id: str
    run_config: dict
    step_key: str
    instance_ref: object
    known_state: object


def _run_step_on_worker(dependencies, task: _StepOnWorker):
    """Runs on the Dask worker: the step of the run, read back from the instance.
    ``dependencies`` (the futures of upstream steps) only order the tasks."""
    from dagster._core.execution.api import create_execution_plan, execute_plan

    with dg.DagsterInstance.from_ref(task.instance_ref) as instance:
        run = instance.get_run_by_id(task.run_id)
        job = task.recon_job.get_subset(op_selection=run.resolved_op_selection)
        plan = create_execution_plan(
            job,
            run_config=task.run_config,
            step_keys_to_execute=[task.step_key],
            known_state=task.known_state,
        )
        return execute_plan(plan, job, instance, run, run_config=task.run_config)


class SplitDaskExecutor(DaskExecutor):
    """dagster-dask's executor with two fixes for runs that share one cluster: a Dask task's
    key names its run (dagster-dask 0.29 keys tasks ``job.step``, so a second run of the same
    job on the cluster would get the first run's results instead of running; dagster issue
    21418), and the run goes to the worker by id, read back there, not as the run object
    (Dask walks task arguments that are tuples, and the run of a job with a pool holds a
    record that refuses iteration). Cluster set-up, configuration and the rest are
    dagster-dask's."""

    def execute(self, plan_context, execution_plan):
        import dask.distributed
        from dagster._core.errors import raise_execution_interrupts
        from dagster._utils import iterate_with_context

        cluster = self._cluster(plan_context.job_name)
        run_id = plan_context.dagster_run.run_id
        with dask.distributed.Client(cluster) as client:
            futures, by_step = [], {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    dependencies = [
                        by_step[key] for i in step.step_inputs for key in i.dependency_keys
                    ]
                    task = _StepOnWorker(
                        recon_job=plan_context.reconstructable_job,
                        run_id=run_id,
                        run_config=dict(plan_context.run_config),
                        step_key=step.key,
                        instance_ref=plan_context.instance.get_ref(),
                        known_state=execution_plan.known_state,
                    )
                    by_step[step.key] = client.submit(
                        _run_step_on_worker,
                        dependencies,
                        task,
                        key=f"{plan_context.job_name}.{step.key}.{run_id}",
                        resources=get_dask_resource_requirements(step.tags),
                    )
                    futures.append(by_step[step.key])
            done = dask.distributed.as_completed(futures, with_results=True)
            for _, events in iterate_with_context(raise_execution_interrupts, done):
                yield from events

    def _cluster(self, job_name):
        """The cluster argument of ``Client``: the address of an existing scheduler, or a
        cluster object of the configured type (as dagster-dask builds it)."""
        if self.cluster_type == "existing":
            return self.cluster_configuration["address"]
        if self.cluster_type == "local":
            from dask.distributed import LocalCluster

            return LocalCluster(**self.build_dict(job_name))
        if self.cluster_type in ("pbs", "slurm", "sge", "lsf", "moab", "oar"):
            import dask_jobqueue

            kind = {"pbs": "PBS", "slurm": "SLURM", "sge": "SGE", "lsf": "LSF"}.get(
                self.cluster_type, self.cluster_type.capitalize()
            )
            return getattr(dask_jobqueue, f"{kind}Cluster")(**self.build_dict(job_name))
        if self.cluster_type == "kube":
            from dask_kubernetes import KubeCluster

            return KubeCluster(**self.build_dict(job_name))
        raise dg.Failure(f"cluster type {self.cluster_type!r} is not supported here")


@dg.executor(
    name="dask",
    config_schema=dask_executor.config_schema,
    requirements=dg.multiple_process_executor_requirements(),
)
def split_dask_executor(init_context) -> SplitDaskExecutor:
    """dagster-dask's executor and configuration (:class:`SplitDaskExecutor`)."""
    ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
    return SplitDaskExecutor(cluster_type, cluster_configuration)


def dask_cluster_config() -> dict:
    """The executor's default ``cluster`` config: the scheduler named by
    ``L1000_DASK_SCHEDULER`` (read when the run starts), else a local cluster."""
    if os.environ.get(DASK_SCHEDULER_ENV, "").strip():
        return {"existing": {"address": {"env": DASK_SCHEDULER_ENV}}}
    return {"local": dict(LOCAL_CLUSTER)}


def training_op_tags() -> dict[str, str]:
    """Tags of ``embedding_model``'s step: the Dask resources a worker needs to train
    (``L1000_DASK_TRAINING_RESOURCES``, JSON such as ``{"GPU": 1}``), else none."""
    raw = os.environ.get(DASK_TRAINING_RESOURCES_ENV, "").strip()
    if not raw:
        return {}
    try:
        resources = json.loads(raw)
        assert isinstance(resources, dict) and all(
            isinstance(v, int | float) for v in resources.values()
        )
    except (ValueError, AssertionError) as exc:
        raise ValueError(
            f"{DASK_TRAINING_RESOURCES_ENV} must be a JSON object of numbers such as "
            f'{{"GPU": 1}}, not {raw!r}'
        ) from exc
    return {"dagster-dask/resource_requirements": json.dumps(resources)}


split_models_job = dg.define_asset_job(
    name="split_models_job",
    selection=dg.AssetSelection.assets(
        PERTURBAGEN_SPLIT, NORMALIZATION_STATS, EMBEDDING_MODEL, EVALUATION_RANKS
    ),
    partitions_def=split_partitions,
    executor_def=split_dask_executor,
    config={"execution": {"config": {"cluster": dask_cluster_config()}}},
    description=(
        "One split partition's model stage (split, statistics, model, ranks) on a Dask "
        "cluster (dagster-dask): a local one by default, the scheduler in "
        "L1000_DASK_SCHEDULER when set (a cluster of machines, dask-jobqueue on Slurm/PBS, "
        "Kubernetes). Backfill several split partitions to train them side by side; raise "
        "the training pool's limit to match the workers."
    ),
)
