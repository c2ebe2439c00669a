"""`make bench`: run every benchmark in this folder, one after the other, each in its own process.

Each benchmark measures its own baseline in the same run (a bare server, python-hl7, a bare consumer)
and prints the ratio, so numbers from different machines compare by ratio, not by absolute value.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("parse_map.py", "store_ceiling.py", "mllp_ingest.py", "http_ingest.py", "amqp_ingest.py",
         "end_to_end.py", "cluster.py")


def main() -> int:
    scripts = [HERE / name for name in ORDER if (HERE / name).exists()]
    scripts += sorted(p for p in HERE.glob("*.py") if p.name not in ORDER and p.name != "run_all.py"
                      and not p.name.startswith("_"))
    failed = 0
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(script), *sys.argv[1:]])
        print(f"--- {script.name}: exit {code} in {time.monotonic() - start:.1f}s", flush=True)
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
