"""Tests of bmx-launch and dist_sync training (Li et al., "Scaling Distributed Machine
Learning with the Parameter Server", 2014, as in MXNet's kvstore): real processes and
sockets on 127.0.0.1."""
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from bmx import launch as bl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
TINY = ("binarydensenet_flex:block_config=(1,1),growth_rate=16,init_features=16,"
        "transition_channels=(16,)")


def _launch(args, timeout=240):
    return subprocess.run([PY, "-m", "bmx.launch"] + args, capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def test_roles_and_environment(tmp_path):
    """Every process gets its role and the DMLC environment; output is prefixed."""
    script = ("import json, os, sys; k = ['DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', "
              "'DMLC_NUM_SERVER', 'DMLC_NUM_WORKER', 'DMLC_INTERFACE']; "
              "e = {x: os.environ[x] for x in k}; print(json.dumps(e))")
    p = _launch(["-n", "3", "-s", "2", "--timeout", "60", "--", PY, "-c", script])
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    roles = {}
    for ln in lines:
        tag, _, body = ln.partition("] ")
        e = json.loads(body)
        roles.setdefault(e["DMLC_ROLE"], []).append(tag.strip("["))
        assert e["DMLC_PS_ROOT_URI"] == "127.0.0.1" and e["DMLC_INTERFACE"] == "lo"
        assert (e["DMLC_NUM_WORKER"], e["DMLC_NUM_SERVER"]) == ("3", "2")
        assert 0 < int(e["DMLC_PS_ROOT_PORT"]) < 65536
    assert sorted(roles["worker"]) == ["worker 0", "worker 1", "worker 2"]
    assert sorted(roles["server"]) == ["server 0", "server 1"]
    assert roles["scheduler"] == ["scheduler"]


def test_failure_stops_the_others_and_is_reported(tmp_path):
    script = ("import os, sys, time\n"
              "if os.environ['DMLC_ROLE'] == 'worker' and os.environ['BMX_LAUNCH_INDEX'] == '1':\n"
              "    time.sleep(0.5); sys.exit(3)\n"
              "time.sleep(120)\n")
    t0 = time.time()
    p = _launch(["-n", "2", "--timeout", "100", "--", PY, "-c", script])
    assert p.returncode == 3
    assert time.time() - t0 < 30
    assert "worker 1 exited with code 3" in p.stderr


def test_timeout_kills_everything():
    t0 = time.time()
    p = _launch(["-n", "1", "--timeout", "1.5", "--", PY, "-c", "import time; time.sleep(120)"])
    assert p.returncode == 124 and "timeout" in p.stderr
    assert time.time() - t0 < 30


@pytest.mark.parametrize("argv", [["--", PY, "-c", "pass"], ["-n", "0", "--", "true"],
                                  ["-n", "2"], ["-n", "2", "-s", "0", "--", "true"]])
def test_bad_launcher_input(argv, capsys):
    with pytest.raises(SystemExit) as e:
        bl.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("bmx-launch: error") and len(err.strip().splitlines()) == 1


def test_free_port():
    import socket
    port = bl.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_two_workers_dist_sync(tmp_path):
    """Two workers, one server, one scheduler train a binary net with dist_sync: both end
    with bit-identical parameters and the training loss falls."""
    import mxnet as mx
    out = tmp_path / "dist"
    p = _launch(["-n", "2", "-s", "1", "--timeout", "200", "--", PY, "-m", "bmx.train",
                 "--kvstore", "dist_sync", "--model", TINY, "--dataset", "digits",
                 "--image-size", "8", "--epochs", "3", "--batch-size", "32", "--lr", "0.01",
                 "--seed", "3", "--quiet", "--no-plot", "--save-dir", str(out)], timeout=260)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    a = mx.nd.load(str(out / "final-rank0.params"))
    b = mx.nd.load(str(out / "final-rank1.params"))
    assert sorted(a) == sorted(b) and len(a) > 10
    for k in a:
        np.testing.assert_array_equal(a[k].asnumpy(), b[k].asnumpy(), err_msg=k)
    rows = list(csv.DictReader(open(out / "log.csv")))
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.8 * losses[0], losses
    summ = json.load(open(out / "summary.json"))
    assert summ["dist_workers"] == 2
    # each worker ran on its half: 1437 // 2 = 718 images -> 23 batches of 32 per epoch
    run = json.load(open(out / "run.json"))
    assert run["dist_workers"] == 2
