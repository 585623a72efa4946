"""``python -m psr.cli``: what ``accelerate launch -m psr.cli sft ...`` runs on every process."""

from psr.cli import main

main()
