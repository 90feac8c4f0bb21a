//! `POST /build` driven by real clients: the docker CLI's classic builder
//! (`DOCKER_BUILDKIT=0 docker build`), then `docker run` of the result; a failing `RUN` makes
//! `docker build` exit with the step's code and error; docker-compose v1 `build` and
//! `up --build` on a small project with a `build:` section. Builds run on berth's builder
//! and runtime; each test has its own server and data root.

mod support;

use std::path::Path;

use support::Server;

const DOCKERFILE: &str = r#"FROM busybox
ARG GREETING=hi
LABEL stage=test
COPY msg.txt /msg.txt
RUN echo "$GREETING" > /greet && echo building-step-output
CMD ["sh", "-c", "cat /msg.txt /greet"]
"#;

fn context(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(dir.join("msg.txt"), "from the context\n").unwrap();
    std::fs::write(
        dir.join("Dockerfile.fail"),
        "FROM busybox\nRUN echo before-failure && exit 7\n",
    )
    .unwrap();
}

fn build(s: &Server, args: &[&str]) -> std::process::Output {
    s.bounded("docker")
        .env("DOCKER_BUILDKIT", "0")
        .arg("build")
        .args(args)
        .output()
        .expect("docker build")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn cli_build_tags_runs_and_a_failing_run_fails_the_build() {
    let s = Server::start();
    let ctx = s.root.path().join("ctx");
    context(&ctx);
    let ctx_s = ctx.to_str().unwrap();

    let o = build(
        &s,
        &[
            "-t",
            "built:1",
            "-t",
            "built-alt",
            "--build-arg",
            "GREETING=hello",
            "--label",
            "made-by=api",
            ctx_s,
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "docker build failed: {out}");
    for want in [
        "Step 1/",
        "FROM busybox",
        "building-step-output",
        "Successfully built ",
        "Successfully tagged built:1",
        "Successfully tagged built-alt",
    ] {
        assert!(out.contains(want), "{want:?} missing from: {out}");
    }
    assert_eq!(
        s.ok(&["run", "--rm", "built:1"]),
        "from the context\nhello\n"
    );
    assert_eq!(
        s.ok(&[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"made-by\"}} {{index .Config.Labels \"stage\"}}",
            "built-alt:latest"
        ])
        .trim(),
        "api test"
    );

    // a rebuild comes from the cache and is the same image; -q prints only its id
    let id = s.ok(&["image", "inspect", "--format", "{{.Id}}", "built:1"]);
    let o = build(
        &s,
        &[
            "-q",
            "-t",
            "built:1",
            "--build-arg",
            "GREETING=hello",
            "--label",
            "made-by=api",
            ctx_s,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), id.trim());

    // -f and --no-cache reach the builder; the failing step's code is the exit code
    let fail = ctx.join("Dockerfile.fail");
    let o = build(
        &s,
        &[
            "--no-cache",
            "-f",
            fail.to_str().unwrap(),
            "-t",
            "broken",
            ctx_s,
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(7), "{out}");
    assert!(out.contains("before-failure"), "{out}");
    assert!(out.contains("returned a non-zero code: 7"), "{out}");
    let missing = s.docker(&["image", "inspect", "broken"]);
    assert!(!missing.status.success(), "a failed build left an image");

    // a Dockerfile error is one line, and a non-zero exit
    std::fs::write(ctx.join("Dockerfile.bad"), "FROM busybox\nNOSUCH thing\n").unwrap();
    let bad = ctx.join("Dockerfile.bad");
    let o = build(&s, &["-f", bad.to_str().unwrap(), ctx_s]);
    assert!(!o.status.success());
    assert!(text(&o).contains("Dockerfile.bad:2"), "{}", text(&o));

    let pruned = s.ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Total"), "{pruned}");
}

const COMPOSE: &str = r#"version: "3"
services:
  app:
    build:
      context: ./app
      args:
        GREETING: from-compose
    image: composebuilt:v1
    command: sh -c 'cat /msg.txt /greet; exec sleep 600'
"#;

#[test]
fn compose_v1_build_and_up_build() {
    let s = Server::start();
    let dir = s.root.path().join("project");
    context(&dir.join("app"));
    std::fs::write(dir.join("docker-compose.yml"), COMPOSE).unwrap();
    let compose = |args: &[&str]| {
        let o = s
            .client("timeout")
            .args(["--kill-after=5", "180", "docker-compose", "-p", "cbuild"])
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run docker-compose");
        assert!(o.status.success(), "docker-compose {args:?}: {}", text(&o));
        text(&o)
    };
    let out = compose(&["build"]);
    assert!(out.contains("Successfully tagged composebuilt:v1"), "{out}");
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "cat",
            "composebuilt:v1",
            "/greet"
        ]),
        "from-compose\n"
    );
    compose(&["up", "-d", "--build"]);
    support::wait_for("the built service's output", 30, || {
        compose(&["logs", "--no-color"]).contains("from the context")
    });
    compose(&["down"]);
    assert!(s.containers().ids().unwrap().is_empty());
}
