"""Reading trackers back with their own readers, and third-party trackers for the tests."""

import re

from tests.helpers import ROOT


def docs_jsonl_tracker(folder):
    """docs/plugins.md's JSON-lines tracker, written to ``folder/jsonl_tracker.py``: the
    documentation's example is the code under test."""
    docs = (ROOT / "docs" / "plugins.md").read_text()
    section = docs[docs.index("## Writing a run tracker"):]
    code, = re.findall(r"```python\n(.*?)```", section[:section.index("\n## ", 3)], re.S)
    path = folder / "jsonl_tracker.py"
    path.write_text(code)
    return path


# A tracker whose every run fails to record: the sweep must lose nothing to it.
BROKEN_TRACKER = '''
import explorer


class Broken:
    def start_run(self, name, group, config, tags):
        raise ConnectionError(f"the server is down\\n(for {name})")


@explorer.hookimpl
def explorer_trackers():
    return [explorer.Tracker(name="broken", open=lambda ctx: Broken(),
                             description="Fails every run.")]
'''


# A tracker that cannot start (its server does not answer): nothing may run.
UNREACHABLE_TRACKER = '''
import explorer


def refuse(ctx):
    raise ConnectionRefusedError("no server at :1")


@explorer.hookimpl
def explorer_trackers():
    return [explorer.Tracker(name="unreachable", open=refuse)]
'''


def mlflow_runs(uri, experiment):
    """``{run name: (run, {metric: [(step, value)]})}`` read through MLflow's own client."""
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([found.experiment_id]):
        history = {key: [(m.step, m.value) for m in sorted(
            client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
            for key in run.data.metrics}
        out[run.info.run_name] = (run, history)
    return out


def tensorboard_run(folder):
    """``(scalars {tag: [(step, value)]}, texts {tag: str})`` of one run's event files, read
    with TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(folder))
    events.Reload()
    tags = events.Tags()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags["scalars"]}
    texts = {tag.removesuffix("/text_summary"): tensor_util.make_ndarray(
        events.Tensors(tag)[-1].tensor_proto).item().decode() for tag in tags["tensors"]}
    return scalars, texts


def tensorboard_hparams(folder):
    """``(hyperparameters {name: value}, metric tags)`` of one run, as TensorBoard's HParams
    tab reads them from its event files."""
    from google.protobuf import json_format
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(folder))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment
    values = {name: json_format.MessageToDict(value) for name, value in start.hparams.items()}
    return values, sorted(info.name.tag for info in experiment.metric_infos)
