"""What is available: the smallest of what the machine (MemAvailable), the memory cgroup (v2 and
v1, limit less usage, the parents' limits too) and the process's rlimits allow; each source read
from files laid out here, and the rlimit for real in a subprocess: a gradflow of gpt2_small and
``explorer.train()`` under ``RLIMIT_AS`` are refused before torch runs out of memory."""

import json
import subprocess
import sys
import textwrap

from explorer.measure import available
from tests.helpers import ROOT

GiB, MiB = 2**30, 2**20


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_machine_available_is_memavailable(tmp_path):
    meminfo = _write(tmp_path / "meminfo", "MemTotal:       24000000 kB\n"
                                           "MemFree:         1000000 kB\n"
                                           "MemAvailable:    5000000 kB\n")
    assert available.machine_available(meminfo) == 5_000_000 * 1024


def test_cgroup_v2_limit_less_usage_and_the_tighter_parent(tmp_path):
    cgroup = _write(tmp_path / "cgroup", "0::/user.slice/job\n")
    root = tmp_path / "sys"
    job = root / "user.slice" / "job"
    _write(job / "memory.max", f"{4 * GiB}\n")
    _write(job / "memory.current", f"{3 * GiB}\n")
    # Page cache the kernel reclaims before the limit binds is not counted as used.
    _write(job / "memory.stat", f"anon {2 * GiB}\ninactive_file {GiB // 2}\n")
    _write(root / "user.slice" / "memory.max", "max\n")  # no limit on the parent
    _write(root / "user.slice" / "memory.current", f"{10 * GiB}\n")
    assert available.cgroup_available(cgroup, root) == 4 * GiB - (3 * GiB - GiB // 2)
    _write(root / "user.slice" / "memory.max", f"{11 * GiB}\n")  # the parent binds first
    assert available.cgroup_available(cgroup, root) == GiB


def test_cgroup_v1_memory_controller(tmp_path):
    cgroup = _write(tmp_path / "cgroup", "5:cpu,cpuacct:/x\n4:memory:/docker/abc\n0::/\n")
    root = tmp_path / "sys"
    folder = root / "memory" / "docker" / "abc"
    _write(folder / "memory.limit_in_bytes", f"{2 * GiB}\n")
    _write(folder / "memory.usage_in_bytes", f"{1536 * MiB}\n")
    _write(folder / "memory.stat", f"cache 0\ntotal_inactive_file {256 * MiB}\n")
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")  # v1's "none"
    _write(root / "memory" / "memory.usage_in_bytes", f"{20 * GiB}\n")
    assert available.cgroup_available(cgroup, root) == 2 * GiB - (1536 - 256) * MiB


def test_no_cgroup_limit_is_none(tmp_path):
    cgroup = _write(tmp_path / "cgroup", "0::/\n")
    root = tmp_path / "sys"
    _write(root / "memory.max", "max\n")
    _write(root / "memory.current", "123\n")
    assert available.cgroup_available(cgroup, root) is None
    assert available.cgroup_available(tmp_path / "absent", root) is None


def test_rlimit_is_the_limit_less_what_the_process_maps(tmp_path):
    import resource

    status = _write(tmp_path / "status", "Name:\tpython\nVmSize:\t 3145728 kB\n"
                                         "VmData:\t 1048576 kB\n")
    limits = {resource.RLIMIT_AS: (10 * GiB, resource.RLIM_INFINITY),
              resource.RLIMIT_DATA: (resource.RLIM_INFINITY, resource.RLIM_INFINITY)}
    assert available.rlimit_available(status, limits.__getitem__) == 10 * GiB - 3 * GiB
    limits[resource.RLIMIT_DATA] = (2 * GiB, resource.RLIM_INFINITY)  # ulimit -d, tighter
    assert available.rlimit_available(status, limits.__getitem__) == GiB
    unlimited = {k: (resource.RLIM_INFINITY, resource.RLIM_INFINITY) for k in limits}
    assert available.rlimit_available(status, unlimited.__getitem__) is None


def test_available_is_the_smallest_source_and_the_override_wins(tmp_path, monkeypatch):
    import resource

    meminfo = _write(tmp_path / "meminfo", "MemAvailable:    8388608 kB\n")  # 8 GiB
    cgroup = _write(tmp_path / "cgroup", "0::/job\n")
    _write(tmp_path / "sys" / "job" / "memory.max", f"{6 * GiB}\n")
    _write(tmp_path / "sys" / "job" / "memory.current", f"{GiB}\n")
    status = _write(tmp_path / "status", "VmSize:\t 1048576 kB\n")  # 1 GiB mapped

    def limits(as_limit):
        return lambda which: ((as_limit if which == resource.RLIMIT_AS
                               else resource.RLIM_INFINITY), resource.RLIM_INFINITY)

    monkeypatch.delenv(available.ENV_AVAILABLE, raising=False)
    paths = dict(meminfo=meminfo, cgroup=cgroup, cgroup_root=tmp_path / "sys", status=status)
    unlimited = limits(resource.RLIM_INFINITY)
    assert available.memory_limits(**paths, getrlimit=unlimited) == {
        "machine": 8 * GiB, "cgroup": 5 * GiB, "rlimit": None}
    assert available.available_memory(**paths, getrlimit=unlimited) == 5 * GiB
    assert available.available_memory(**paths, getrlimit=limits(3 * GiB)) == 2 * GiB
    monkeypatch.setenv(available.ENV_AVAILABLE, "7GiB")
    assert available.available_memory(**paths, getrlimit=limits(3 * GiB)) == 7 * GiB


# In a fresh process: torch and explorer imported, then RLIMIT_AS set to what the process maps
# now plus 1.5 GiB: gpt2_small's weights (670 MiB) fit, training them (~2.6 GiB) does not.
UNDER_RLIMIT = textwrap.dedent("""
    import json, resource, sys
    import torch
    import explorer
    from explorer.cli import main
    from explorer.model.gpt import build_model
    import explorer.analysis.runner, explorer.training.loop  # imported before the limit is set

    with open("/proc/self/status") as f:
        mapped = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + 1536 * 2**20, resource.RLIM_INFINITY))
    try:
        main(["build", "specs/gpt2_small.yaml", "--only", "gradflow"])
        code = 0
    except SystemExit as exc:
        code = exc.code
    spec = explorer.load_spec("specs/gpt2_small.yaml")
    model = build_model(spec)  # the weights fit
    try:
        explorer.train(model, spec, explorer.TrainConfig(steps=1, batch_size=1, seq_len=64))
        trained = "trained"
    except explorer.ResourceError as exc:
        trained = str(exc)
    print(json.dumps({"code": code, "train": trained,
                      "gradients": any(p.grad is not None for p in model.parameters())}))
""")


def test_a_gradflow_and_a_training_run_under_rlimit_as_are_refused(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", UNDER_RLIMIT], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    # The CLI: one line, exit 2, the prediction named; torch never ran out of memory.
    assert result["code"] == 2
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error: specs/gpt2_small.yaml: gradflow "
                                                     "needs about "), done.stderr
    assert "is available" in errors[0] and "Traceback" not in done.stderr
    # explorer.train() from Python: refused before its optimizer or a gradient exists.
    assert result["train"].startswith("specs/gpt2_small.yaml: train needs about ")
    assert "AdamW 1.2 GiB" in result["train"] and not result["gradients"]
