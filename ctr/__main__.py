from ctr.cli import run

run()
