from kubectl_proxydoctor.cli import main

main()
