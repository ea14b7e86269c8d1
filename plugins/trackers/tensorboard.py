"""The TensorBoard tracker: event files, a folder per run, written with torch's SummaryWriter.

The folders are ``LOG_DIR/EXPERIMENT/POINT/seed=N``, so TensorBoard's run list groups the seeds
of a point under it. Scalars ``loss/train``, ``loss/val`` (``loss/aux`` where the model has one)
and ``tokens`` at each step of the curve, the final figures as ``final/NAME`` at the last step;
text ``config`` (the flat settings and tags, a Markdown table) and ``status`` (``done``, or
``failed: KIND: reason``); and the settings as hyperparameters with the final figures as their
metrics, so TensorBoard's HParams tab tables every run. A run tried again gets a folder of its
own (``seed=N.2``).
"""

import re
from pathlib import Path

CURVE_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "aux_loss": "loss/aux",
              "tokens": "tokens"}


def folder_name(text):
    """``text`` as one folder name: no separators, nothing a shell or TensorBoard's regex
    filter trips on beyond what a label holds (``norm=rmsnorm, lr=0.001``)."""
    return re.sub(r"[^\w=,.+-]+", "_", str(text)).strip("._") or "_"


def open_tracker(ctx, log_dir):
    root = Path(ctx.folder) / (log_dir or "tensorboard") / folder_name(ctx.experiment)
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - fails now, not per run

    return TensorBoardSession(root)


class TensorBoardSession:
    def __init__(self, root):
        self.root = root

    def run_folder(self, name, group):
        """POINT/seed=N for a run named ``"POINT seed=N"``; a free folder if it is taken."""
        leaf = name[len(group):].strip() if name.startswith(group) and name != group else name
        folder = self.root / folder_name(group) / folder_name(leaf)
        attempt, candidate = 1, folder
        while candidate.exists():
            attempt += 1
            candidate = folder.with_name(f"{folder.name}.{attempt}")
        return candidate

    def start_run(self, name, group, config, tags):
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.run_folder(name, group)))
        rows = {**{f"tag.{k}": v for k, v in tags.items()}, "group": group, **config}
        table = "| key | value |\n|---|---|\n" + "\n".join(
            f"| {key} | {str(value).replace('|', '/')} |" for key, value in rows.items())
        writer.add_text("config", table, 0)
        return TensorBoardRun(writer, {"group": group, **config})


class TensorBoardRun:
    def __init__(self, writer, config):
        self.writer, self.config = writer, config
        self.final = []  # the final figures' tags: the HParams tab's metrics

    def log_curve(self, curve):
        for point in curve:
            for key, tag in CURVE_TAGS.items():
                if key in point:
                    self.writer.add_scalar(tag, point[key], point["step"])

    def log_metrics(self, metrics, step):
        for key, value in metrics.items():
            self.writer.add_scalar(f"final/{key}", value, step or 0)
            self.final.append(f"final/{key}")

    def finish(self, status, failure):
        from torch.utils.tensorboard.summary import hparams

        self.writer.add_text("status", f"failed: {failure}" if failure else status, 0)
        # Into this run's own event file (SummaryWriter.add_hparams would make another folder).
        # HParams take numbers, strings and booleans: anything else (a None) as its text.
        values = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                  for key, value in {**self.config, "status": status}.items()}
        for summary in hparams(values, dict.fromkeys(self.final, 0.0)):
            self.writer.file_writer.add_summary(summary)
        self.writer.close()
