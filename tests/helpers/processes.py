"""The processes under a process, read from /proc (Linux): what a test kills or spares."""

import os


def descendants(pid):
    """``{pid: command name}`` of every process under ``pid`` (its children, theirs, ...)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:]
            children.setdefault(int(rest.split()[1]), []).append((int(entry), name))
    found, todo = {}, [pid]
    while todo:
        for child, name in children.get(todo.pop(), []):
            found[child] = name
            todo.append(child)
    return found
