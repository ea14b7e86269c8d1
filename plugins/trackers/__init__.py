"""Built-in run trackers: MLflow (mlflow.py) and TensorBoard (tensorboard.py).

Registered like any third-party tracker. This module stays light: ``open`` is a
``"module:attribute"`` string, so listing plugins never imports MLflow, TensorBoard or torch,
and each tracker names the extra that installs what it needs.
"""

from explorer import Param, Tracker, hookimpl


@hookimpl
def explorer_trackers():
    return [
        Tracker(
            name="mlflow", open="explorer.plugins.trackers.mlflow:open_tracker",
            description="MLflow: each run an MLflow run, its config as params, the loss "
                        "curve per step, final metrics, tags for the point and seed; a file "
                        "store beside the sweep's store, or any tracking URI.",
            params=(
                Param("uri", str, "", "An MLflow tracking URI (sqlite:///mlflow.db, "
                      "http://host:5000) or a folder; a relative path is beside the store. "
                      "Default: $MLFLOW_TRACKING_URI, else the file store mlruns/ beside the "
                      "store."),
                Param("experiment", str, "", "The MLflow experiment (default: the sweep's "
                      "name)."),
            ),
            requires=("mlflow",), install='pip install "explorer[mlflow]"',
        ),
        Tracker(
            name="tensorboard", open="explorer.plugins.trackers.tensorboard:open_tracker",
            description="TensorBoard event files, a folder per run (POINT/seed=N): the loss "
                        "curve, tokens per step, final metrics, config and status as text, "
                        "hyperparameters for the HParams tab.",
            params=(
                Param("log_dir", str, "", "The root folder; a relative path is beside the "
                      "store. Default: tensorboard/ beside the store."),
            ),
            requires=("tensorboard", "torch"), install='pip install "explorer[tensorboard]"',
        ),
    ]
