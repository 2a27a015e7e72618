"""Test-only worker ops and a staged copy of the worker package that holds them.

Production code stays clean: the ops exist only in a copy of ``migrator.worker``
made for the tests (``run_worker(..., worker_path=stage_worker(dir))``).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from migrator import envs

FAKE_OPS = {
    "echo": """
        def run(request):
            print("libraries print to stdout; this must not reach the response")
            return {"echo": request}
        """,
    "boom": """
        def run(request):
            raise ValueError("bäd\\nvalue ✓")
        """,
    "die": """
        import os, sys
        def run(request):
            sys.stderr.write("about to die\\n")
            sys.stderr.flush()
            os._exit(3)
        """,
    "sleep": """
        import os, subprocess, sys, time
        def run(request):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            with open(request["pid_file"], "w") as f:
                f.write(f"{os.getpid()} {child.pid}")
            sys.stderr.write("sleeping now\\n")
            sys.stderr.flush()
            time.sleep(300)
            return {}
        """,
    "boom_when": """
        import os, time
        def run(request):
            while not os.path.exists(request["after"]):
                time.sleep(0.05)
            raise ValueError("planned failure")
        """,
    "notjson": """
        def run(request):
            return {"value": object()}
        """,
    "progress": """
        import time
        from migrator.worker import progressfile
        def run(request):
            progressfile.EVERY_S = 0.05
            meter = progressfile.ProgressFile(request["progress_path"], of=None)
            started = time.monotonic()
            while time.monotonic() - started < request["seconds"]:
                time.sleep(0.02)
                meter.advance(1, 1)
                if request.get("stall_after") and meter.threads >= request["stall_after"]:
                    time.sleep(300)
            meter.finish()
            return {"threads": meter.threads}
        """,
    "whoami": """
        import os
        def run(request):
            print("printed by a library")
            return {"pid": os.getpid(), "ppid": os.getppid(), "echo": request}
        """,
    "langgraph_warns": """
        import dataclasses
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        @dataclasses.dataclass
        class Parcel:
            weight: int

        def run(request):
            serde = JsonPlusSerializer()
            for _ in range(3):  # langgraph warns once per type and process
                value = serde.loads_typed(serde.dumps_typed(Parcel(3)))
            return {"weight": value.weight}
        """,
    "leave": """
        import sys
        def run(request):
            sys.modules["migrator.worker"].LEFT_BEHIND = request["value"]
            return {}
        """,
    "look": """
        import sys
        def run(request):
            return {"found": getattr(sys.modules["migrator.worker"], "LEFT_BEHIND", None)}
        """,
}


def stage_worker(root: Path) -> Path:
    """``root`` holding a copy of the worker package plus :data:`FAKE_OPS`."""
    shutil.copytree(envs.worker_source_dir(cache=root / "cache") / "migrator", root / "migrator")
    for name, body in FAKE_OPS.items():
        (root / "migrator" / "worker" / f"op_{name}.py").write_text(textwrap.dedent(body))
    return root
