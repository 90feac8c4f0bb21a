#!/usr/bin/env python3
"""Writes a Compose file with N services (default 200) that exercises the loader's paths:
interpolation, short and long syntaxes, depends_on chains, healthchecks, networks, volumes."""
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
out = ["x-common: &common", "  restart: unless-stopped",
       "  labels:", "    com.example.tier: bench", "services:"]
for i in range(n):
    s = f"svc{i:03d}"
    out += [f"  {s}:", "    <<: *common", "    image: ${REGISTRY:-docker.io}/library/busybox:latest",
            f'    command: ["httpd", "-f", "-p", "{8000 + i}"]',
            "    environment:", f"      INDEX: \"{i}\"", "      LOG_LEVEL: ${LOG_LEVEL:-info}",
            "    ports:", f'      - "127.0.0.1:{20000 + i}:{8000 + i}/tcp"',
            "    volumes:", f"      - data{i % 10}:/data", "      - ./conf:/etc/conf:ro",
            "    networks: [front, back]",
            "    healthcheck:", '      test: ["CMD", "true"]', "      interval: 1m30s", "      timeout: 5s",
            "      retries: 3",
            "    deploy:", "      resources:", "        limits: {cpus: \"0.5\", memory: 64m}"]
    deps = [d for d in (i - 1, i - 7) if d >= 0]
    if deps:
        out.append("    depends_on:")
        for d in deps:
            out += [f"      svc{d:03d}:", "        condition: service_started"]
out += ["networks:", "  front: {}", "  back: {internal: true}", "volumes:"]
out += [f"  data{j}: {{}}" for j in range(10)]
print("\n".join(out))
