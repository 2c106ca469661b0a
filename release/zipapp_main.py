# __main__.py of the single-file kubectl-proxydoctor (a Python zip application).
#
# The file holds `payload.zip`: the package and its pure-Python dependencies. The first run unpacks
# it into a per-build cache directory; every run then imports from there, so Python compiles and
# caches the bytecode as for an installed package and start-up costs about the same. Kept to the
# syntax of old Pythons (no f-strings) so that an old python3 gets one clear line instead of a traceback.
import os
import sys

BUILD = "@BUILD@"
NEEDS = (3, 11)


def fail(message):
    sys.stderr.write("kubectl-proxydoctor: " + message + "\n")
    sys.exit(3)


def version(info):
    return ".".join(str(part) for part in info[:2])


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kubectl-proxydoctor")


def unpack(archive, target):
    """Unpack the payload into ``target`` atomically (a complete directory or none); return it."""
    import shutil
    import tempfile
    import zipfile

    with zipfile.ZipFile(archive) as outer:
        payload = zipfile.ZipFile(outer.open("payload.zip"))
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(target))
        except OSError:
            # No writable cache (read-only home): unpack for this run only, into a private temp dir.
            import atexit

            staging = tempfile.mkdtemp(prefix="kubectl-proxydoctor-")
            atexit.register(shutil.rmtree, staging, True)
            payload.extractall(staging)
            return staging
        payload.extractall(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another run unpacked the same build first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main():
    if sys.version_info < NEEDS:
        here = sys.executable + " is " + version(sys.version_info)
        fail("needs Python " + version(NEEDS) + " or newer; " + here)
    archive = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(cache_root(), BUILD)
    if not os.path.isdir(target):
        try:
            target = unpack(archive, target)
        except Exception as e:  # one line, never a traceback (a full disk, a truncated copy)
            fail("cannot unpack " + archive + " into " + os.path.dirname(target) + ": " + str(e))
    sys.path[0] = target
    from kubectl_proxydoctor.cli import main as cli_main

    cli_main()


main()
