"""Kernel collector: release (kernel.txt), config (kernel-config.txt), modules (modules.txt).

/proc/modules does not exist on kernels built without module support: then modules.txt is not
written and the source says "built-in or unknown" (never "missing").
"""

from __future__ import annotations

import os

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.nodeinfo import decompress_config


def collect(ctx: CollectContext) -> None:
    """uname -r, /proc/config.gz or /boot/config-<release>, /proc/modules (+ modules.builtin)."""
    release = os.uname().release
    ctx.ok("kernel.txt", "kernel.txt", release + "\n")

    config_text, config_error = None, None
    for path in ("/proc/config.gz", f"/boot/config-{release}"):
        try:
            with open(path, "rb") as f:
                config_text = decompress_config(f.read())
            break
        except FileNotFoundError:
            continue
        except OSError as e:
            config_error = f"{path}: {e.strerror or e}"
    if config_text is not None:
        ctx.ok("kernel-config.txt", "kernel-config.txt", config_text)
    else:
        ctx.unavailable("kernel-config.txt", config_error or
                        f"neither /proc/config.gz nor /boot/config-{release} exists")

    lines: list[str] = []
    modules_error = None
    have_proc_modules = False
    try:
        with open("/proc/modules") as f:
            lines.extend(f.read().splitlines())
        have_proc_modules = True
    except FileNotFoundError:
        pass
    except OSError as e:
        modules_error = f"/proc/modules: {e.strerror or e}"
    try:
        with open(f"/lib/modules/{release}/modules.builtin") as f:
            lines.extend(line.strip() for line in f if line.strip())
    except OSError:
        pass
    if lines:
        ctx.ok("modules.txt", "modules.txt", "\n".join(lines) + "\n")
        if not have_proc_modules:
            ctx.sources["modules.txt"] = "ok (modules.builtin only: /proc/modules does not exist)"
    elif modules_error:
        ctx.unavailable("modules.txt", modules_error)
    elif not have_proc_modules:
        ctx.unavailable("modules.txt",
                        "/proc/modules does not exist (no module support): built-in or unknown")
    else:
        ctx.ok("modules.txt", "modules.txt", "")
