"""Print one of a finished demo run's sizes (demo_summary.json's "sizes": max_tokens, train, ...), for the bench
scripts that repeat a stage of the run with its own settings.

    .venv/bin/python bench/demo_size.py runs/d0-seed0 max_tokens
"""

import json
import os
import sys

if __name__ == "__main__":
    run, key = sys.argv[1:3]
    with open(os.path.join(run, "demo_summary.json")) as fh:
        print(json.load(fh)["sizes"][key])
