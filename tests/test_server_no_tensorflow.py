"""The catalogue is served without TensorFlow, and a server on the local executor never imports Ray
nor pyarrow (which only `nncards.run`'s nested lists need): checked inside a fresh server process."""

import json
import subprocess
import sys

SERVE_AND_REPORT = """
import json, sys, threading, time
import httpx, uvicorn
from nncards.server.app import create_app
from nncards.server.settings import Settings

app = create_app(Settings(data_dir=sys.argv[1], warm_up=False, port=int(sys.argv[2])))
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.02)
base = f"http://127.0.0.1:{sys.argv[2]}/api/v1"
statuses = [httpx.get(base + path).status_code
            for path in ("/cards", "/cards/layer_BatchNormalization", "/types")]
loaded = sorted(m for m in ("tensorflow", "keras", "tf_keras", "ray", "pyarrow") if m in sys.modules)
server.should_exit = True
print(json.dumps({"statuses": statuses, "loaded": loaded}))
"""


def test_catalogue_routes_do_not_import_tensorflow_nor_ray(tmp_path):
    from conftest import free_port

    done = subprocess.run([sys.executable, "-c", SERVE_AND_REPORT, str(tmp_path), str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"statuses": [200, 200, 200], "loaded": []}
