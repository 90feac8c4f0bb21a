"""A scripted lifecycle through the Docker SDK for Python (docker-py) against berth.

Run by tests/python_sdk.rs with DOCKER_HOST pointing at the server; prints OK at the end.
"""
import time

import docker


def step(what):
    """Progress on stdout: a run cut short by the test's timeout shows where it stood."""
    print(f"step: {what}", flush=True)


client = docker.from_env(timeout=60)
assert client.ping()
assert client.version()["Platform"]["Name"] == "berth"
assert any("busybox:latest" in i.tags for i in client.images.list())

step("volumes and networks")
vol = client.volumes.create("sdkvol", labels={"made-by": "sdk"})
net = client.networks.create("sdknet", labels={"made-by": "sdk"})
assert client.volumes.get("sdkvol").attrs["Labels"]["made-by"] == "sdk"
assert [n.name for n in client.networks.list(names=["sdknet"])] == ["sdknet"]

step("run detached")
ctr = client.containers.run(
    "busybox",
    ["sh", "-c", "echo sdk-hello; echo data > /data/f; exec sleep 600"],
    detach=True,
    name="sdk1",
    labels={"suite": "sdk"},
    network="sdknet",
    volumes={"sdkvol": {"bind": "/data", "mode": "rw"}},
    environment={"GREETING": "hi"},
)
deadline = time.time() + 20
while b"sdk-hello" not in ctr.logs():
    assert time.time() < deadline, "no output"
    time.sleep(0.05)
ctr.reload()
assert ctr.status == "running", ctr.status
assert "sdknet" in ctr.attrs["NetworkSettings"]["Networks"]
assert [c.name for c in client.containers.list(filters={"label": "suite=sdk"})] == ["sdk1"]

step("exec")
res = ctr.exec_run(["sh", "-c", "echo $GREETING; cat /data/f; echo oops >&2; exit 4"], demux=True)
assert res.exit_code == 4, res
assert res.output == (b"hi\ndata\n", b"oops\n"), res.output

step("stop and wait")
ctr.stop(timeout=1)
ctr.reload()
assert ctr.status == "exited", ctr.status
assert ctr.wait()["StatusCode"] == 137

step("run --rm")
out = client.containers.run("busybox", ["echo", "one-shot"], remove=True)
assert out == b"one-shot\n", out

# images.build: a tar context through POST /build, then a container of the result
import io
import tarfile

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tar:
    dockerfile = b'FROM busybox\nARG WORD=x\nRUN echo "$WORD" > /word\nCMD ["cat", "/word"]\n'
    info = tarfile.TarInfo("Dockerfile")
    info.size = len(dockerfile)
    tar.addfile(info, io.BytesIO(dockerfile))
buf.seek(0)
step("build")
image, logs = client.images.build(
    fileobj=buf, custom_context=True, tag="sdkbuilt:1", buildargs={"WORD": "sdk-built"}, rm=True
)
assert "sdkbuilt:1" in image.tags, image.tags
assert any("Step" in chunk.get("stream", "") for chunk in logs)
step("run the built image")
out = client.containers.run("sdkbuilt:1", remove=True)
assert out == b"sdk-built\n", out
step("failing build")
try:
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tar:
        dockerfile = b"FROM busybox\nRUN exit 5\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    bad.seek(0)
    client.images.build(fileobj=bad, custom_context=True)
    raise AssertionError("a failing RUN built")
except docker.errors.BuildError as e:
    assert "non-zero code: 5" in str(e), str(e)

step("cleanup")
ctr.remove()
net.remove()
vol.remove()
assert client.containers.list(all=True) == []
print("OK")
