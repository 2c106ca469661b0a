"""Release tooling: `make dist` (wheel, sdist, single-file executable, krew archive, plugin.yaml)."""
