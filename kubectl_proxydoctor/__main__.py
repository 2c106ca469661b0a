from kubectl_proxydoctor.cli import run

run()
