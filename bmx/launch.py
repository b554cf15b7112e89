"""``bmx-launch``: run a distributed MXNet job (parameter server) on this machine.

Li et al., "Scaling Distributed Machine Learning with the Parameter Server" (OSDI 2014),
as shipped in MXNet's ``dist_sync`` kvstore. This launcher starts one scheduler,
``-s`` servers and ``-n`` workers as separate processes talking over real sockets on
127.0.0.1, with the DMLC environment MXNet reads (``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``,
``DMLC_PS_ROOT_PORT``, ``DMLC_NUM_SERVER``, ``DMLC_NUM_WORKER``, ``DMLC_INTERFACE``)::

    bmx-launch -n 2 -s 1 -- bmx-train --kvstore dist_sync --dataset digits --epochs 5

Every process runs the same command (MXNet turns the scheduler and server processes into
their roles on ``import mxnet``). Output lines are prefixed with the role and index. The
exit code is 0 when every process succeeded, otherwise the first failure's code (124 on
timeout, 130 when interrupted); on a failure the remaining processes are stopped.
For a real cluster use MXNet's own ``tools/launch.py`` (see docs/training.md).
"""
import argparse
import difflib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

__all__ = ["main", "launch", "free_port"]

PROG = "bmx-launch"


def free_port(host="127.0.0.1"):
    """A TCP port that is free right now (bound with port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Proc:
    def __init__(self, role, index, cmd, env, prefix_output):
        self.role, self.index = role, index
        self.name = f"{role} {index}" if role != "scheduler" else "scheduler"
        out = subprocess.PIPE if prefix_output else None
        self.popen = subprocess.Popen(cmd, env=env, stdout=out,
                                      stderr=subprocess.STDOUT if prefix_output else None,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.thread = None
        if prefix_output:
            self.thread = threading.Thread(target=self._pump, daemon=True)
            self.thread.start()

    def _pump(self):
        tag = f"[{self.name}] ".encode()
        out = getattr(sys.stdout, "buffer", None)
        for line in iter(self.popen.stdout.readline, b""):
            try:
                if out is not None:
                    out.write(tag + line)
                    out.flush()
                else:
                    sys.stdout.write((tag + line).decode(errors="replace"))
                    sys.stdout.flush()
            except (ValueError, OSError):  # stdout closed: keep draining the pipe
                pass
        self.popen.stdout.close()

    def poll(self):
        return self.popen.poll()

    def stop(self, sig):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)  # the whole group: children of the command too
            except (ProcessLookupError, PermissionError):
                pass


def launch(command, num_workers, num_servers=1, timeout=None, port=None, host="127.0.0.1",
           interface="lo", prefix_output=True, grace=30.0, env=None):
    """Start scheduler, servers and workers running ``command``; return the exit code.

    Parameters
    ----------
    command : list of str
    num_workers, num_servers : int
    timeout : float or None
        Seconds for the whole job; on expiry every process is killed and 124 returned.
    port : int or None
        Scheduler port (default: a free one).
    grace : float
        Seconds the scheduler and servers get to exit after the last worker finished.
    """
    if not command:
        raise ValueError("no command to launch")
    base = dict(os.environ if env is None else env)
    base.update({"DMLC_PS_ROOT_URI": host, "DMLC_PS_ROOT_PORT": str(port or free_port(host)),
                 "DMLC_NUM_SERVER": str(num_servers), "DMLC_NUM_WORKER": str(num_workers),
                 "DMLC_INTERFACE": interface, "DMLC_NODE_HOST": host,
                 "PYTHONUNBUFFERED": "1"})
    procs = []

    def start(role, i):
        e = dict(base, DMLC_ROLE=role)
        if role == "worker":
            e["BMX_LAUNCH_INDEX"] = str(i)  # launch order; MXNet assigns the kvstore rank
        procs.append(_Proc(role, i, command, e, prefix_output))

    deadline = None if not timeout else time.time() + timeout
    try:
        start("scheduler", 0)
        for i in range(num_servers):
            start("server", i)
        for i in range(num_workers):
            start("worker", i)
        return _supervise(procs, grace, timeout, deadline)
    except KeyboardInterrupt:
        _say("interrupted; stopping every process")
        _stop_all(procs)
        return 130
    except BaseException:
        _stop_all(procs)
        raise


def _supervise(procs, grace, timeout, deadline):
    """Wait for the job; return its exit code. The first process that fails stops the
    others (its code, or 128 + N when killed by signal N); scheduler and servers still
    running ``grace`` seconds after the last worker are stopped (0); past ``deadline``
    everything is stopped (124)."""
    workers = [p for p in procs if p.role == "worker"]
    workers_done_at = None
    while True:
        for p in procs:
            rc = p.poll()
            if rc is not None and rc != 0:
                _say(f"{p.name} exited with code {rc}; stopping the other processes")
                _stop_all(procs)
                return rc if rc > 0 else 128 - rc  # killed by signal -rc
        if all(p.poll() is not None for p in procs):
            _join(procs)
            return 0
        now = time.time()
        if workers_done_at is None and all(p.poll() is not None for p in workers):
            workers_done_at = now
        if workers_done_at is not None and now - workers_done_at > grace:
            left = ", ".join(p.name for p in procs if p.poll() is None)
            _say(f"workers finished but {left} did not exit within {grace:g} s; stopping them")
            _stop_all(procs)
            return 0
        if deadline is not None and now > deadline:
            left = ", ".join(p.name for p in procs if p.poll() is None)
            _say(f"timeout after {timeout:g} s ({left} still running); stopping everything")
            _stop_all(procs)
            return 124
        time.sleep(0.05)


def _stop_all(procs):
    """SIGTERM to every process group, SIGKILL to what is left after 5 s, then reap."""
    for p in procs:
        p.stop(signal.SIGTERM)
    t_end = time.time() + 5
    while time.time() < t_end and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    for p in procs:
        p.stop(signal.SIGKILL)
    for p in procs:
        try:
            p.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    _join(procs)


def check_command(command):
    """Why ``command`` cannot run as a parameter-server job (a message), or None.

    The program must exist; ``bmx-train`` (or ``python -m bmx.train``) must be given
    ``--kvstore dist_sync``, without which every worker would train on its own and all
    of them would write the same save directory.
    """
    prog = command[0]
    if os.sep in prog:
        if not (os.path.isfile(prog) and os.access(prog, os.X_OK)):
            return f"command not found: {prog} (not an executable file)"
    elif shutil.which(prog) is None:
        near = [n for n in difflib.get_close_matches(prog, ["bmx-train", "python", "python3"])
                if n != prog and shutil.which(n)]
        hint = f"; did you mean {near[0]}?" if near else ""
        return f"command not found: {prog} (not on PATH{hint})"
    is_train = (os.path.basename(prog) == "bmx-train" or
                any(command[i:i + 2] == ["-m", "bmx.train"] for i in range(len(command))))
    kv = [command[i + 1] for i, a in enumerate(command[:-1]) if a == "--kvstore"]
    kv += [a.split("=", 1)[1] for a in command if a.startswith("--kvstore=")]
    if is_train and "dist_sync" not in kv:
        return ("bmx-train needs --kvstore dist_sync under bmx-launch (otherwise the workers "
                "train independently and write one save directory): add --kvstore dist_sync")
    return None


def _join(procs):
    for p in procs:
        if p.thread is not None:
            p.thread.join(timeout=5)


def _say(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        _say(f"error: {message}")
        sys.exit(2)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        k = argv.index("--")
        own, command = argv[:k], argv[k + 1:]
    else:
        own, command = argv, []
    p = _Parser(prog=PROG, usage=f"{PROG} -n N [-s S] [--timeout SEC] [--port P] -- COMMAND ...",
                description="Start an MXNet parameter-server job (scheduler, servers, workers) "
                "on 127.0.0.1; every process runs COMMAND.")
    from . import __version__
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("-n", "--num-workers", type=int, required=True)
    p.add_argument("-s", "--num-servers", type=int, default=1)
    p.add_argument("--timeout", type=float, default=24 * 3600.0,
                   help="seconds for the whole job (0: none); exit 124 on expiry")
    p.add_argument("--port", type=int, default=None, help="scheduler port (default: a free one)")
    p.add_argument("--no-prefix", action="store_true", help="do not prefix output lines")
    args = p.parse_args(own)
    if args.num_workers < 1:
        p.error(f"-n must be >= 1, got {args.num_workers}")
    if args.num_servers < 1:
        p.error(f"-s must be >= 1, got {args.num_servers}")
    if args.timeout < 0:
        p.error(f"--timeout must be >= 0, got {args.timeout:g}")
    if args.port is not None and not 0 < args.port < 65536:
        p.error(f"--port must be in 1..65535, got {args.port}")
    if not command:
        p.error("no command: put it after --, e.g. bmx-launch -n 2 -- bmx-train --kvstore "
                "dist_sync ...")
    problem = check_command(command)
    if problem:
        p.error(problem)
    return launch(command, args.num_workers, args.num_servers, timeout=args.timeout or None,
                  port=args.port, prefix_output=not args.no_prefix)


if __name__ == "__main__":
    sys.exit(main())
