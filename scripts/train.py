"""Meta-train from a script: the same entry and options as ``robometa train``.

python scripts/train.py                                # quick MAML-TRPO on cheetah-vel
python scripts/train.py --algo maml-ppo --preset paper --family cheetah-dir
python scripts/train.py iterations=50 inner_lr=0.05 --run-dir runs/try
python scripts/train.py --resume runs/try
"""

from __future__ import annotations

import sys

from robometa.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
