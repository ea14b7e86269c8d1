"""The MLflow tracker: each run an MLflow run, written through MLflow's own client.

Params are the run's flat config; metrics ``train_loss``, ``val_loss`` and ``tokens`` at each
step of the curve, then the final figures at the last step; tags ``group`` (the grid point,
shared by its seeds, so MLflow's "group by" gathers them), ``point``, ``seed``, ``sweep``,
``run_key``, and ``failure`` for a failed run, whose MLflow status is FAILED.

MLflow (3.7 on) keeps its file store in maintenance mode and refuses it unless
``MLFLOW_ALLOW_FILE_STORE`` is set; it is the store a local sweep wants (no database to create,
readable by ``mlflow ui --backend-store-uri``), so this tracker sets that variable when it
writes to one, unless the user set it already. Any other URI is MLflow's to handle.
"""

import os
import time
from pathlib import Path
from urllib.parse import urlparse

ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
# MLflow's limits on one log_batch call and on a param's value.
BATCH_METRICS, BATCH_PARAMS, PARAM_CHARS = 1000, 100, 6000


def tracking_uri(uri, folder):
    """The URI to write to: the option, else $MLFLOW_TRACKING_URI, else ``folder/mlruns``; a
    path (no scheme) is a file store, relative to ``folder``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "") or "mlruns"
    if urlparse(uri).scheme in ("", "file") and not uri.startswith("file:"):
        uri = (Path(folder) / uri).resolve().as_uri()
    return uri


def open_tracker(ctx, uri, experiment):
    uri = tracking_uri(uri, ctx.folder)
    if uri.startswith("file:"):
        os.environ.setdefault(ALLOW_FILE_STORE, "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    name = experiment or ctx.experiment
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    return MlflowSession(client, experiment_id)


class MlflowSession:
    def __init__(self, client, experiment_id):
        self.client, self.experiment_id = client, experiment_id

    def start_run(self, name, group, config, tags):
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={**tags, "group": group})
        params = [Param(key, str(value)[:PARAM_CHARS]) for key, value in config.items()]
        for i in range(0, len(params), BATCH_PARAMS):
            self.client.log_batch(run.info.run_id, params=params[i: i + BATCH_PARAMS])
        return MlflowRun(self.client, run.info.run_id)


class MlflowRun:
    def __init__(self, client, run_id):
        self.client, self.run_id = client, run_id

    def _log(self, metrics):
        for i in range(0, len(metrics), BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[i: i + BATCH_METRICS])

    def log_curve(self, curve):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._log([Metric(key, float(point[key]), now, point["step"])
                   for point in curve
                   for key in ("train_loss", "val_loss", "aux_loss", "tokens") if key in point])

    def log_metrics(self, metrics, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._log([Metric(key, float(value), now, step or 0) for key, value in metrics.items()])

    def finish(self, status, failure):
        if failure:
            self.client.set_tag(self.run_id, "failure", failure)
        self.client.set_terminated(self.run_id, "FINISHED" if status == "done" else "FAILED")
