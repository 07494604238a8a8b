"""Entry point of ``python -m byok.emulator``."""

from byok.emulator.cli import emulator

if __name__ == "__main__":
    emulator(prog_name="python -m byok.emulator")
