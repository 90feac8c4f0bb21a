#!/usr/bin/env python3
"""Same meaning as Docker Compose: every corpus file that both loaders accept goes through
`berth config --format json` and Debian's `docker-compose config` (1.29), each alone in an
empty directory with an empty environment, and the two results are compared field by field
after both are brought to one form (short and long syntaxes, list and map forms, string and
list commands). Prints every difference and a summary; exits 1 if any service differs.

    python3 bench/corpus-meaning.py [CORPUS_DIR]      BERTH=path/to/berth to skip the build

Compared per service: image, command, entrypoint, environment, ports, volumes (type, source,
target, read-only), networks (and aliases), depends_on, restart, user, working_dir,
hostname, labels, cap_add, cap_drop, privileged, read_only, tty, stdin_open, healthcheck
(test, interval, timeout, retries, start_period), expose, extra_hosts, dns, env_file-less
environment, network_mode, pid, ipc, shm_size, stop_signal, stop_grace_period, ulimits,
sysctls, tmpfs, devices, security_opt, init, container_name, logging, secrets and configs
(names and targets), deploy replicas; and the top-level networks/volumes (names, drivers,
external). Fields docker-compose 1.29 does not print the same way for reasons of its own
(v1-only conventions) are normalized, never skipped silently: see `normalize_*` below.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def berth_binary():
    if os.environ.get("BERTH"):
        return os.environ["BERTH"]
    subprocess.run(["cargo", "build", "-q", "--bin", "berth"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "debug", "berth")


def run(cmd, cwd):
    env = {"PATH": "/usr/bin:/bin"}
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|h|m|s)")
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def seconds(v):
    """A duration in seconds, from '1m30s', '10s', '500ms' or a number of seconds."""
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    total, pos = 0.0, 0
    for m in DURATION.finditer(v):
        if m.start() != pos:
            return v
        total += float(m.group(1)) * UNITS[m.group(2)]
        pos = m.end()
    return round(total, 6) if pos == len(v) and pos else v


SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtb]?)b?$", re.I)


def size(v):
    if v is None or isinstance(v, int):
        return v
    m = SIZE.match(str(v).strip())
    if not m:
        return v
    mult = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    return int(float(m.group(1)) * mult[m.group(2).lower()])


def command(v):
    """Compose v2 (and berth) print commands as lists; v1 keeps a string as written."""
    if v is None or v == []:
        return None
    if isinstance(v, str):
        try:
            return shlex.split(v)
        except ValueError:
            return v
    return [str(x) for x in v]


def kv(v, sep="="):
    """A list of `k=v` strings or a map, as a map of strings (None for a bare key)."""
    if v is None:
        return {}
    if isinstance(v, dict):
        return {str(k): (None if x is None else str(x)) for k, x in v.items()}
    out = {}
    for item in v:
        k, s, x = str(item).partition(sep)
        out[k] = x if s else None
    return out


def env_value(x):
    if x is None:
        return None
    if isinstance(x, bool):
        return "true" if x else "false"
    return str(x)


def environment(v):
    return {k: env_value(x) for k, x in kv(v).items()}


PORT = re.compile(
    r"^(?:(?:\[?(?P<ip>[0-9a-fA-F.:]+?)\]?:)?(?P<host>[\d-]*):)?(?P<target>[\d-]+)(?:/(?P<proto>\w+))?$"
)


def expand(r):
    if r in (None, ""):
        return [None]
    a, _, b = str(r).partition("-")
    if not b:
        return [int(a)]
    return list(range(int(a), int(b) + 1))


def ports(v):
    out = []
    for p in v or []:
        if isinstance(p, dict):
            published = p.get("published")
            out.append(
                (
                    p.get("host_ip") or "",
                    None if published in (None, "") else str(published),
                    int(p["target"]),
                    p.get("protocol") or "tcp",
                )
            )
            continue
        m = PORT.match(str(p))
        if not m:
            out.append(("?", str(p)))
            continue
        targets = expand(m.group("target"))
        hosts = expand(m.group("host")) if m.group("host") else [None] * len(targets)
        if len(hosts) == 1 and len(targets) > 1:
            hosts = hosts * len(targets)
        for h, t in zip(hosts, targets):
            out.append((m.group("ip") or "", None if h is None else str(h), t, m.group("proto") or "tcp"))
    return sorted(out, key=repr)


def volumes(v, named):
    out = []
    for m in v or []:
        if isinstance(m, dict):
            out.append(
                (
                    m.get("type"),
                    m.get("source") or None,
                    m.get("target"),
                    bool(m.get("read_only")),
                )
            )
            continue
        parts = str(m).split(":")
        if len(parts) == 1:
            out.append(("volume", None, parts[0], False))
            continue
        src, target = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else ""
        kind = "volume" if src in named or not src.startswith(("/", ".", "~")) else "bind"
        out.append((kind, src, target, "ro" in mode.split(",")))
    return sorted(out, key=repr)


def networks(v):
    if v is None:
        return {}
    if isinstance(v, list):
        return {n: [] for n in v}
    return {n: sorted((c or {}).get("aliases") or []) for n, c in v.items()}


def depends_on(v):
    if v is None:
        return []
    return sorted(v if isinstance(v, list) else v.keys())


def healthcheck(v):
    if not v:
        return None
    test = v.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    return {
        "test": test,
        "disable": bool(v.get("disable")) or test == ["NONE"],
        "interval": seconds(v.get("interval")),
        "timeout": seconds(v.get("timeout")),
        "retries": v.get("retries"),
        "start_period": seconds(v.get("start_period")),
    }


def files_refs(v):
    out = []
    for s in v or []:
        if isinstance(s, str):
            out.append((s, None))
        else:
            out.append((s.get("source"), s.get("target")))
    return sorted(out, key=repr)


def ulimits(v):
    out = {}
    for k, x in (v or {}).items():
        out[k] = (x, x) if isinstance(x, int) else (x.get("soft"), x.get("hard"))
    return out


def tmpfs(v):
    if v is None:
        return []
    return sorted([v] if isinstance(v, str) else v)


def as_list(v):
    if v is None:
        return []
    return sorted(str(x) for x in ([v] if isinstance(v, (str, int)) else v))


def extra_hosts(v):
    if isinstance(v, dict):
        return sorted(f"{k}:{x}" for k, x in v.items())
    # v1 writes host:ip, Compose v2 also accepts host=ip
    return sorted(str(x).replace("=", ":", 1) for x in (v or []))


def replicas(s):
    d = s.get("deploy") or {}
    r = d.get("replicas")
    return None if r in (None, 1) else r


def logging(v):
    if not v:
        return None
    return (v.get("driver"), kv(v.get("options")))


def service(s, named):
    restart = s.get("restart")
    return {
        "image": s.get("image"),
        "command": command(s.get("command")),
        "entrypoint": command(s.get("entrypoint")),
        "environment": environment(s.get("environment")),
        "ports": ports(s.get("ports")),
        "volumes": volumes(s.get("volumes"), named),
        "networks": networks(s.get("networks")),
        "depends_on": depends_on(s.get("depends_on")),
        "restart": None if restart in (None, "no") else restart,
        "user": None if s.get("user") is None else str(s.get("user")),
        "working_dir": s.get("working_dir"),
        "hostname": s.get("hostname"),
        "labels": kv(s.get("labels")),
        "cap_add": sorted(s.get("cap_add") or []),
        "cap_drop": sorted(s.get("cap_drop") or []),
        "privileged": bool(s.get("privileged")),
        "read_only": bool(s.get("read_only")),
        "tty": bool(s.get("tty")),
        "stdin_open": bool(s.get("stdin_open")),
        "healthcheck": healthcheck(s.get("healthcheck")),
        "expose": as_list(s.get("expose")),
        "extra_hosts": extra_hosts(s.get("extra_hosts")),
        "dns": as_list(s.get("dns")),
        "network_mode": s.get("network_mode"),
        "pid": s.get("pid"),
        "ipc": s.get("ipc"),
        "shm_size": size(s.get("shm_size")),
        "stop_signal": s.get("stop_signal"),
        "stop_grace_period": seconds(s.get("stop_grace_period")),
        "ulimits": ulimits(s.get("ulimits")),
        "sysctls": kv(s.get("sysctls")),
        "tmpfs": tmpfs(s.get("tmpfs")),
        "devices": sorted(
            d if isinstance(d, str) else f"{d.get('source')}:{d.get('target')}"
            for d in s.get("devices") or []
        ),
        "security_opt": sorted(s.get("security_opt") or []),
        "init": bool(s.get("init")),
        "container_name": s.get("container_name"),
        "logging": logging(s.get("logging")),
        "secrets": files_refs(s.get("secrets")),
        "configs": files_refs(s.get("configs")),
        "replicas": replicas(s),
    }


def implicit_default_network(svc):
    """Compose v2 (and berth) print the implicit `default` network of a service that names
    none; v1 leaves it out. The same meaning either way."""
    if not svc["networks"] and not svc["network_mode"]:
        svc["networks"] = {"default": []}
    return svc


def resolve_sources(svc, project_dir, named):
    """v1 prints relative bind sources as absolute paths; berth does too. Named volumes
    keep their short name on both sides."""
    out = []
    for kind, src, target, ro in svc["volumes"]:
        if kind == "bind" and src and not src.startswith("/"):
            src = os.path.normpath(os.path.join(project_dir, os.path.expanduser(src)))
        out.append((kind, src, target, ro))
    svc["volumes"] = sorted(out, key=repr)
    return svc


def top_level(doc, key):
    out = {}
    for name, c in (doc.get(key) or {}).items():
        c = c or {}
        ext = c.get("external")
        if isinstance(ext, dict):  # v1: external: {name: x}
            ext = True
        out[name] = {"driver": c.get("driver"), "external": bool(ext)}
    return out


def project(doc, project_dir):
    named = set((doc.get("volumes") or {}).keys())
    services = {}
    for name, s in (doc.get("services") or {}).items():
        if (s or {}).get("profiles"):
            # no profile is active here: Compose v2 (and berth) leave these services out
            # of `config`; docker-compose 1.29 prints them
            continue
        svc = resolve_sources(service(s or {}, named), project_dir, named)
        services[name] = implicit_default_network(svc)
    return {
        "services": services,
        "networks": {k: v for k, v in top_level(doc, "networks").items() if k != "default"},
        "volumes": top_level(doc, "volumes"),
    }


# Where docker-compose 1.29 departs from the Compose Specification that berth (and Compose
# v2) follow: (file, field) -> why. Reported as explained, not as differences.
SEXAGESIMAL = "1.29 reads YAML 1.1, where an unquoted 2222:22 is the base-60 integer 133342; Compose v2 (YAML 1.2) and berth read the port mapping 2222:22"
NESTED = "1.29 does not interpolate nested defaults (${A:-${B}}) and keeps the text; the Compose Specification (v2, berth) resolves them"
LINKS = "Compose v2 (compose-go's normalization) and berth add each `links` target to depends_on; 1.29 prints depends_on as written"
EXPLAINED = {
    ("haxx/examples_gitea_docker-compose.yml", "services.gitea.ports"): SEXAGESIMAL,
    ("haxx/examples_gitlab_docker-compose.yml", "services.gitlab-ce.ports"): SEXAGESIMAL,
    ("haxx/examples_requestbin_docker-compose.yml", "services.app.depends_on"): LINKS,
    ("haxx/examples_wikijs_docker-compose.yml", "services.wikijs.depends_on"): LINKS,
    ("haxx/examples_rocketchat_docker-compose.yml", "services.rocketchat.environment.MONGO_URL"): NESTED,
    ("haxx/examples_rocketchat_docker-compose.yml", "services.rocketchat.environment.MONGO_OPLOG_URL"): NESTED,
    ("haxx/examples_rocketchat_docker-compose.yml", "services.rocketchat.environment.ROOT_URL"): NESTED,
    ("random/Ready2k+CatalAIst__docker-compose.prod.yml", "services.backend.environment.ALLOWED_ORIGINS"): NESTED,
    ("random/Ready2k+CatalAIst__docker-compose.prod.yml", "services.backend.environment.CREDENTIALS_ENCRYPTION_KEY"): NESTED,
    ("random/Ready2k+CatalAIst__docker-compose.yml", "services.backend.environment.CREDENTIALS_ENCRYPTION_KEY"): NESTED,
}


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            yield from diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    elif a != b:
        yield path, a, b


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "corpus", "compose")
    berth = berth_binary()
    files = sorted(
        os.path.join(d, f)
        for d in (os.path.join(corpus, x) for x in sorted(os.listdir(corpus)))
        if os.path.isdir(d)
        for f in sorted(os.listdir(d))
    )
    both = same = 0
    differing, explained = [], {}
    with tempfile.TemporaryDirectory() as work:
        for path in files:
            d = tempfile.mkdtemp(dir=work)
            with open(path, "rb") as src, open(os.path.join(d, "compose.yaml"), "wb") as dst:
                dst.write(src.read())
            rb, ob, _ = run([berth, "-f", "compose.yaml", "-p", "corpus", "config", "--format", "json"], d)
            rc, oc, _ = run(["docker-compose", "-f", "compose.yaml", "-p", "corpus", "config"], d)
            if rb != 0 or rc != 0:
                continue
            both += 1
            # both print a literal `$` of the interpolated model as `$$`
            mine = project(json.loads(ob.replace("$$", "$")), d)
            theirs = project(yaml.safe_load(oc.replace("$$", "$")), d)
            name = os.path.relpath(path, corpus)
            found = []
            for where, a, b in diff(mine, theirs):
                why = EXPLAINED.get((name, where))
                if why:
                    explained.setdefault(why, []).append(f"{name}: {where}")
                else:
                    found.append((where, a, b))
            if found:
                differing.append(name)
                print(f"== {name}")
                for where, a, b in found:
                    print(f"   {where}\n     berth:          {a!r}\n     docker-compose: {b!r}")
            else:
                same += 1
    for why, places in explained.items():
        print(f"explained ({len(places)}): {why}")
        for p in places:
            print(f"   {p}")
    print(f"\nfiles both load: {both}; same meaning (explained differences aside): {same}; differing: {len(differing)}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
