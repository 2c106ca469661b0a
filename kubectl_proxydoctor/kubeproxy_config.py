"""kube-proxy's configuration, from its ConfigMap (config.conf) and its DaemonSet's flags.

Mirrors cmd/kube-proxy/app/server.go (v1.30): with ``--config`` the file replaces every flag
except logging and ``--hostname-override``; without it the (deprecated) flags are the
configuration. The ConfigMap that holds the file is the one the DaemonSet mounts at the directory
of ``--config``. Every value records where it came from (``evidence``).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from kubectl_proxydoctor.errors import ParseError

KUBE_SYSTEM = "kube-system"
DEFAULT_CONFIGMAP = "kube-proxy"
DEFAULT_KEY = "config.conf"

# kube-proxy v1alpha1 defaults for pointer fields left null (pkg/proxy/apis/config/v1alpha1/defaults.go)
CONNTRACK_DEFAULTS: dict[str, Any] = {
    "maxPerCore": 32768,
    "min": 131072,
    "tcpEstablishedTimeout": "24h0m0s",
    "tcpCloseWaitTimeout": "1h0m0s",
}

# flag -> (section or "", field, kind)
_FLAGS: dict[str, tuple[str, str, str]] = {
    "proxy-mode": ("", "mode", "str"),
    "cluster-cidr": ("", "clusterCIDR", "str"),
    "nodeport-addresses": ("", "nodePortAddresses", "list"),
    "hostname-override": ("", "hostnameOverride", "str"),
    "detect-local-mode": ("", "detectLocalMode", "str"),
    "metrics-bind-address": ("", "metricsBindAddress", "str"),
    "healthz-bind-address": ("", "healthzBindAddress", "str"),
    "feature-gates": ("", "featureGates", "gates"),
    "masquerade-all": ("iptables", "masqueradeAll", "bool"),
    "conntrack-max-per-core": ("conntrack", "maxPerCore", "int"),
    "conntrack-min": ("conntrack", "min", "int"),
    "conntrack-tcp-timeout-established": ("conntrack", "tcpEstablishedTimeout", "str"),
    "conntrack-tcp-timeout-close-wait": ("conntrack", "tcpCloseWaitTimeout", "str"),
    "conntrack-tcp-be-liberal": ("conntrack", "tcpBeLiberal", "bool"),
    "conntrack-udp-timeout": ("conntrack", "udpTimeout", "str"),
    "conntrack-udp-timeout-stream": ("conntrack", "udpStreamTimeout", "str"),
    "iptables-masquerade-bit": ("iptables", "masqueradeBit", "int"),
    "iptables-sync-period": ("iptables", "syncPeriod", "str"),
    "iptables-min-sync-period": ("iptables", "minSyncPeriod", "str"),
    "iptables-localhost-nodeports": ("iptables", "localhostNodePorts", "bool"),
    "ipvs-scheduler": ("ipvs", "scheduler", "str"),
    "ipvs-sync-period": ("ipvs", "syncPeriod", "str"),
    "ipvs-min-sync-period": ("ipvs", "minSyncPeriod", "str"),
    "ipvs-strict-arp": ("ipvs", "strictARP", "bool"),
    "ipvs-exclude-cidrs": ("ipvs", "excludeCIDRs", "list"),
    "ipvs-tcp-timeout": ("ipvs", "tcpTimeout", "str"),
    "ipvs-tcpfin-timeout": ("ipvs", "tcpFinTimeout", "str"),
    "ipvs-udp-timeout": ("ipvs", "udpTimeout", "str"),
}
_TOP_FIELDS = ("mode", "clusterCIDR", "nodePortAddresses", "hostnameOverride", "detectLocalMode",
               "metricsBindAddress", "healthzBindAddress", "featureGates")
SECTIONS = ("conntrack", "iptables", "ipvs", "nftables")


@dataclass
class KubeProxyConfig:
    """kube-proxy's effective configuration as far as the API shows it, with evidence per value."""

    mode: str = ""  # as configured; "" means the platform default (iptables on Linux)
    cluster_cidr: str = ""
    node_port_addresses: list[str] = field(default_factory=list)
    hostname_override: str = ""
    detect_local_mode: str = ""
    metrics_bind_address: str = ""
    healthz_bind_address: str = ""
    feature_gates: dict[str, bool] = field(default_factory=dict)
    conntrack: dict[str, Any] = field(default_factory=dict)
    iptables: dict[str, Any] = field(default_factory=dict)
    ipvs: dict[str, Any] = field(default_factory=dict)
    nftables: dict[str, Any] = field(default_factory=dict)
    image: str = ""
    version: str = ""  # from the DaemonSet's image tag, e.g. "v1.30.3"
    config_file: str | None = None  # --config path
    args: list[str] = field(default_factory=list)  # the container's command + args
    evidence: dict[str, str] = field(default_factory=dict)  # field -> where its value came from
    problems: list[str] = field(default_factory=list)  # unreadable config, ignored flags, ...
    found: bool = False  # a kube-proxy ConfigMap or DaemonSet was seen
    file_read: bool = False  # the --config file (ConfigMap) was read

    @property
    def mode_known(self) -> bool:
        """False when kube-proxy reads a --config file that could not be read here."""
        return self.found and (self.config_file is None or self.file_read)

    @property
    def effective_mode(self) -> str:
        """The mode kube-proxy runs on Linux: an empty mode means iptables."""
        return self.mode or "iptables"

    @property
    def masquerade_all(self) -> bool:
        """masqueradeAll of the section the configured mode reads (nftables has its own)."""
        section = self.nftables if self.effective_mode == "nftables" else self.iptables
        return bool(section.get("masqueradeAll"))

    def conntrack_effective(self) -> dict[str, Any]:
        """Conntrack settings with kube-proxy's defaults for values left null."""
        out = dict(self.conntrack)
        for key, default in CONNTRACK_DEFAULTS.items():
            if out.get(key) is None:
                out[key] = default
        return out

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "effective_mode": self.effective_mode,
            "clusterCIDR": self.cluster_cidr,
            "nodePortAddresses": list(self.node_port_addresses),
            "masqueradeAll": self.masquerade_all,
            "conntrack": self.conntrack_effective(),
            "iptables": dict(self.iptables),
            "ipvs": dict(self.ipvs),
            "nftables": dict(self.nftables),
            "image": self.image,
            "version": self.version,
            "evidence": dict(self.evidence),
            "problems": list(self.problems),
        }


# -- parsing ----------------------------------------------------------------------------------


def parse_config_text(text: str, source: str = "config.conf") -> dict:
    """A KubeProxyConfiguration YAML (or JSON) document as a dict; ParseError when it is not one."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ParseError(source, f"not valid YAML: {getattr(e, 'problem', None) or e}", line) from e
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ParseError(source, "expected a KubeProxyConfiguration mapping")
    kind = doc.get("kind")
    if kind not in (None, "KubeProxyConfiguration"):
        raise ParseError(source, f"kind is {kind!r}, expected KubeProxyConfiguration")
    return doc


def expand_shell(argv: list[str]) -> list[str]:
    """Split ``sh -c "kube-proxy --config=..."`` style arguments into their words."""
    import shlex

    out: list[str] = []
    for arg in argv:
        if " " in arg.strip() and "--" in arg:
            try:
                out.extend(shlex.split(arg))
                continue
            except ValueError:
                pass
        out.append(arg)
    return out


def parse_flags(argv: list[str]) -> dict[str, str]:
    """``--name=value`` / ``--name value`` / ``--bool-flag`` arguments as a dict (last one wins);
    shell-wrapped command lines (``sh -c "kube-proxy ..."``) are split first."""
    argv = expand_shell(argv)
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if not eq:
            nxt = argv[i] if i < len(argv) else None
            if _FLAGS.get(name, ("", "", ""))[2] != "bool" and name not in _BOOL_ONLY and nxt is not None \
                    and not nxt.startswith("-"):
                value = nxt
                i += 1
            else:
                value = "true"
        flags[name] = value
    return flags


_BOOL_ONLY = {"cleanup", "init-only", "bind-address-hard-fail", "profiling", "alsologtostderr", "logtostderr",
              "add_dir_header", "one_output", "skip_headers", "skip_log_headers"}


def _convert(kind: str, value: str) -> Any:
    if kind == "bool":
        return value.lower() in ("true", "1", "t", "yes")
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "list":
        return [v.strip() for v in value.strip("[]").split(",") if v.strip()]
    if kind == "gates":
        gates: dict[str, bool] = {}
        for part in value.split(","):
            key, _, val = part.partition("=")
            if key.strip():
                gates[key.strip()] = val.strip().lower() == "true"
        return gates
    return value


def image_version(image: str) -> str:
    """``registry.k8s.io/kube-proxy:v1.30.3@sha256:...`` -> ``v1.30.3`` ("" without a tag)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


# -- finding the objects ----------------------------------------------------------------------


def _find(objects: list[dict], name: str, namespace: str = KUBE_SYSTEM) -> dict | None:
    for obj in objects:
        meta = obj.get("metadata") or {}
        if meta.get("name") == name and meta.get("namespace", namespace) == namespace:
            return obj
    return None


def kube_proxy_container(daemonset: dict) -> dict | None:
    """The kube-proxy container of a DaemonSet (by name, command or image; else the first)."""
    containers = ((((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {})
                  .get("containers") or [])
    for c in containers:
        text = " ".join([c.get("name", ""), c.get("image", ""), *(c.get("command") or [])])
        if "kube-proxy" in text:
            return c
    return containers[0] if containers else None


def referenced_configmap(daemonset: dict) -> tuple[str, str] | None:
    """(ConfigMap name, key) the DaemonSet mounts at its ``--config`` path, when it does."""
    container = kube_proxy_container(daemonset)
    if container is None:
        return None
    config = parse_flags([*(container.get("command") or []), *(container.get("args") or [])]).get("config")
    if not config:
        return None
    volumes = {v.get("name"): v for v in
               (((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        path = str(mount.get("mountPath", "")).rstrip("/")
        sub = str(mount.get("subPath") or "")
        if path and config == path and sub:
            rel = sub  # the file itself is mounted (subPath: config.conf)
        elif path and config.startswith(path + "/"):
            rel = posixpath.join(sub, config[len(path) + 1:]) if sub else config[len(path) + 1:]
        else:
            continue
        volume = volumes.get(mount.get("name")) or {}
        cm = volume.get("configMap")
        if not cm:
            continue
        key = rel
        for item in cm.get("items") or []:
            if item.get("path") == rel:
                key = item.get("key", rel)
        return str(cm.get("name", DEFAULT_CONFIGMAP)), key
    return None


# -- the configuration ------------------------------------------------------------------------


def from_cluster(cluster: Any, cmdline: str | list[str] | None = None) -> KubeProxyConfig:
    """kube-proxy's configuration from a ClusterState's kube-system DaemonSet and ConfigMap; a
    command line seen on the node (e.g. meta.json ``kube_proxy_cmdline``) stands in for the DaemonSet."""
    import shlex

    try:
        args = shlex.split(cmdline) if isinstance(cmdline, str) else cmdline
    except ValueError:  # unbalanced quotes: split on blanks
        args = str(cmdline).split()
    if not isinstance(args, list):
        args = None
    if cluster is None:
        return read_config(cmdline=args, cmdline_source="node command line") if args else KubeProxyConfig()
    return read_config(daemonset=_find(cluster.daemonsets, "kube-proxy"), configmaps=cluster.configmaps,
                       cmdline=args, cmdline_source="node command line")


def read_config(daemonset: dict | None = None, configmaps: list[dict] | None = None,
                configmap: dict | None = None, *, cmdline: list[str] | None = None,
                cmdline_source: str = "kube-proxy command line") -> KubeProxyConfig:
    """Resolve the configuration like kube-proxy: ``--config`` file (from its ConfigMap) or flags.

    ``cmdline`` is kube-proxy's own command line as seen on the node (used when no DaemonSet)."""
    cfg = KubeProxyConfig()
    configmaps = list(configmaps or [])
    if configmap is not None:
        configmaps.insert(0, configmap)
    flags: dict[str, str] = {}
    ds_name = "DaemonSet kube-system/kube-proxy"
    if daemonset is None and cmdline:
        cfg.found = True
        ds_name = cmdline_source
        cfg.args = expand_shell(list(cmdline))
        flags = parse_flags(cfg.args)
    if daemonset is not None:
        cfg.found = True
        ds_name = f"DaemonSet {_ref(daemonset)}"
        container = kube_proxy_container(daemonset)
        if container is not None:
            cfg.image = str(container.get("image", ""))
            cfg.version = image_version(cfg.image)
            if cfg.version:
                cfg.evidence["version"] = f"{ds_name} image {cfg.image}"
            cfg.args = [*(container.get("command") or []), *(container.get("args") or [])]
            flags = parse_flags(cfg.args)
    cfg.config_file = flags.get("config") or None

    cm_name, key = (referenced_configmap(daemonset) if daemonset is not None else None) or (
        DEFAULT_CONFIGMAP, posixpath.basename(cfg.config_file) if cfg.config_file else DEFAULT_KEY)
    cm = _find(configmaps, cm_name)
    doc: dict | None = None
    if cm is not None:
        cfg.found = True
        data = cm.get("data") or {}
        if key not in data and len(data) and cfg.config_file is None:
            key = next((k for k in data if k.startswith("config")), key)
        text = data.get(key)
        if text is None:
            cfg.problems.append(f"ConfigMap {_ref(cm)} has no key {key!r}")
        else:
            try:
                doc = parse_config_text(text, f"ConfigMap {_ref(cm)} {key}")
            except ParseError as e:
                cfg.problems.append(f"{e} (kube-proxy cannot start with this file)")

    have_args = daemonset is not None or bool(cmdline)
    use_file = doc is not None and (cfg.config_file is not None or not have_args)
    if use_file:
        assert cm is not None and doc is not None  # doc is read from cm
        cfg.file_read = True
        where = f"ConfigMap {_ref(cm)} {key}"
        _apply_file(cfg, doc, where)
        ignored = sorted(f for f in flags if f in _FLAGS and f != "hostname-override")
        if ignored and cfg.config_file is not None:
            cfg.problems.append(
                f"{ds_name} passes --config and also {', '.join('--' + f for f in ignored)}: "
                "kube-proxy ignores those flags when --config is set")
    else:
        if cm is not None and doc is not None and cfg.config_file is None:
            cfg.problems.append(f"ConfigMap {_ref(cm)} exists but {ds_name} does not pass --config: "
                                "kube-proxy uses its flags, not that file")
        elif cfg.config_file is not None and doc is None and cm is None:
            cfg.problems.append(f"{ds_name} passes --config={cfg.config_file} but ConfigMap "
                                f"{KUBE_SYSTEM}/{cm_name} was not read")
    for name, value in flags.items():
        spec = _FLAGS.get(name)
        if spec is None:
            continue
        if use_file and cfg.config_file is not None and name != "hostname-override":
            continue
        section, key_name, kind = spec
        _set(cfg, section, key_name, _convert(kind, value), f"{ds_name} flag --{name}={value}")
    if "mode" not in cfg.evidence:
        cfg.evidence["mode"] = "default (mode unset: iptables on Linux)"
    return cfg


def _apply_file(cfg: KubeProxyConfig, doc: dict, where: str) -> None:
    for key_name in _TOP_FIELDS:
        if key_name in doc and doc[key_name] is not None:
            _set(cfg, "", key_name, doc[key_name], f"{where} {key_name}: {_show(doc[key_name])}")
    for section in SECTIONS:
        values = doc.get(section)
        if isinstance(values, dict):
            for key_name, value in values.items():
                _set(cfg, section, key_name, value, f"{where} {section}.{key_name}: {_show(value)}")


def _set(cfg: KubeProxyConfig, section: str, key_name: str, value: Any, evidence: str) -> None:
    if section:
        getattr(cfg, section)[key_name] = value
        cfg.evidence[f"{section}.{key_name}"] = evidence
        return
    attr = _snake(key_name)
    if key_name == "nodePortAddresses":
        value = [str(v) for v in value] if isinstance(value, list) else _convert("list", str(value))
    elif key_name == "featureGates":
        value = {str(k): bool(v) for k, v in value.items()} if isinstance(value, dict) else {}
    else:
        value = "" if value is None else str(value)
    setattr(cfg, attr, value)
    cfg.evidence[attr] = evidence


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])([A-Z])", r"_\1", name).lower()


def _show(value: Any) -> str:
    import json

    return value if isinstance(value, str) and value else json.dumps(value, sort_keys=True)


def _ref(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', KUBE_SYSTEM)}/{meta.get('name', '?')}"
