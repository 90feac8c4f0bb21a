//! The build commands end to end (root; Debian's `busybox-static`): `berth build` of a
//! Compose project's `build:` sections (short and long syntax, `dockerfile_inline`, `args`,
//! default image names), the cache marks in the progress output, `berth image build` with
//! a Dockerfile from stdin, `berth builder prune`, and a built image pushed to (and its base
//! pulled from, with `--pull`) Debian's `docker-registry` on 127.0.0.1. Each test has its
//! own data root, removed on drop.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use berth_testkit::{Registry, bins, root};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        bins::ensure(&bins::dir_of(BERTH), &[bins::RUNC]);
        let dir = tempfile::tempdir().expect("tempdir");
        root::import_busybox(&dir.path().join("data"));
        fs::create_dir_all(dir.path().join("proj")).unwrap();
        Env { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn project(&self) -> PathBuf {
        self.dir.path().join("proj")
    }

    fn berth(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = berth_testkit::bounded(300, BERTH)
            .arg("--data-root")
            .arg(self.data())
            .args(args)
            .current_dir(self.project())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().expect("berth")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn compose_build_caches_and_names_images() {
    let env = Env::new();
    let p = env.project();
    fs::create_dir_all(p.join("web")).unwrap();
    fs::write(
        p.join("web/Dockerfile"),
        "FROM busybox:latest\nARG MSG=default\nCOPY index.html /www/\nRUN echo \"$MSG\" > /www/msg\n",
    )
    .unwrap();
    fs::write(p.join("web/index.html"), "<h1>hi</h1>\n").unwrap();
    fs::write(
        p.join("compose.yaml"),
        "name: proj\nservices:\n  web:\n    build:\n      context: web\n      args:\n        MSG: from-compose\n  api:\n    image: local/api:2\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox:latest\n        RUN echo api > /api\n  db:\n    image: busybox:latest\n",
    )
    .unwrap();

    let first = env.berth(&["build"], None);
    let (out, err) = (text(&first.stdout), text(&first.stderr));
    assert!(first.status.success(), "{err}");
    assert!(out.contains("Built proj-web ("), "{out}");
    assert!(out.contains("Built local/api:2 ("), "{out}");
    assert!(err.contains("RUN echo \"$MSG\" > /www/msg\n"), "{err}");
    assert!(!err.contains("CACHED"), "{err}");

    let second = env.berth(&["build", "web"], None);
    let err = text(&second.stderr);
    assert!(second.status.success(), "{err}");
    assert!(err.contains("COPY index.html /www/ CACHED"), "{err}");
    assert!(err.contains("RUN echo \"$MSG\" > /www/msg CACHED"), "{err}");
    assert!(text(&second.stdout).contains("0 steps run, 2 cached"));

    // A changed build arg re-runs only the RUN.
    let third = env.berth(&["build", "--build-arg", "MSG=changed", "web"], None);
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert!(text(&third.stdout).contains("1 steps run, 1 cached"));

    let ls = env.berth(&["image", "ls"], None);
    let listing = text(&ls.stdout);
    assert!(
        listing.contains("proj-web") && listing.contains("local/api"),
        "{listing}"
    );

    let db = env.berth(&["build", "db"], None);
    assert!(!db.status.success());
    assert!(text(&db.stderr).contains("db: has no build section"));

    let prune = env.berth(&["builder", "prune", "--force"], None);
    assert!(prune.status.success());
    assert!(text(&prune.stdout).starts_with("Deleted "));
    let after = env.berth(&["build", "-q", "web"], None);
    assert!(after.status.success());
    assert!(text(&after.stdout).starts_with("sha256:"));
}

#[test]
fn image_build_reads_a_dockerfile_from_stdin_and_reports_failures() {
    let env = Env::new();
    fs::create_dir_all(env.project().join("ctx")).unwrap();
    let ok = env.berth(
        &["image", "build", "-q", "-t", "one:1", "-f", "-", "ctx"],
        Some("FROM busybox:latest\nRUN echo one > /one\n"),
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let id = text(&ok.stdout).trim().to_owned();
    assert!(id.starts_with("sha256:"), "{id}");
    let inspect = env.berth(&["image", "inspect", "one:1"], None);
    assert!(text(&inspect.stdout).contains(&id));

    fs::write(
        env.project().join("ctx/Dockerfile"),
        "FROM busybox:latest\nRUN exit 3\n",
    )
    .unwrap();
    let bad = env.berth(&["image", "build", "-t", "two:1", "ctx"], None);
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    let last = err.lines().last().unwrap_or("");
    assert_eq!(
        last,
        "berth: Dockerfile:2: step [stage-0 2/2] `RUN exit 3` failed: the command returned a non-zero code: 3"
    );
}

#[test]
fn built_images_push_and_pull_bases_through_a_registry() {
    let registry = Registry::start();
    let env = Env::new();
    let base = format!("{}/base/busybox:1", registry.addr);
    let app = format!("{}/built/app:1", registry.addr);
    assert!(
        env.berth(&["image", "tag", "busybox:latest", &base], None)
            .status
            .success()
    );
    let push = env.berth(&["push", "-q", &base], None);
    assert!(push.status.success(), "{}", text(&push.stderr));
    // --pull fetches the base from the registry through `berth pull`.
    assert!(
        env.berth(&["image", "rm", "--force", &base], None)
            .status
            .success()
    );
    fs::create_dir_all(env.project().join("ctx")).unwrap();
    fs::write(
        env.project().join("ctx/Dockerfile"),
        format!("FROM {base}\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n"),
    )
    .unwrap();
    let built = env.berth(&["image", "build", "-q", "--pull", "-t", &app, "ctx"], None);
    assert!(built.status.success(), "{}", text(&built.stderr));
    let id = text(&built.stdout).trim().to_owned();
    let push = env.berth(&["push", "-q", &app], None);
    assert!(push.status.success(), "{}", text(&push.stderr));

    // Another data root gets the very same image back.
    let other = Env::new();
    let pull = other.berth(&["pull", "-q", &app], None);
    assert!(pull.status.success(), "{}", text(&pull.stderr));
    let inspect = other.berth(&["image", "inspect", &app], None);
    assert!(
        text(&inspect.stdout).contains(&id),
        "{}",
        text(&inspect.stdout)
    );
}
