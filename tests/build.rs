//! The build commands end to end (root; Debian's `busybox-static`): `berth build` of a
//! Compose project's `build:` sections (short and long syntax, `dockerfile_inline`, `args`,
//! default image names), the cache marks in the progress output, `berth image build` with
//! a Dockerfile from stdin, `berth builder prune`, and a built image pushed to (and its base
//! pulled from, with `--pull`) Debian's `docker-registry` on 127.0.0.1. Each test has its
//! own data root, removed on drop.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// Builds `berth-runc` next to `berth` if `cargo test` did not.
fn ensure_runtime() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = Path::new(BERTH).parent().expect("bin dir");
        if dir.join("berth-runc").is_file() {
            return;
        }
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "berth-runtime", "--bin", "berth-runc"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building berth-runc failed");
    });
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        ensure_runtime();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = berth_image::Store::open(dir.path().join("data/image")).unwrap();
        berth_image::testing::import_busybox(
            &store,
            &berth_image::Reference::parse("busybox:latest").unwrap(),
        )
        .expect("import busybox (apt-get install busybox-static)");
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
        let mut child = Command::new(BERTH)
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

struct Registry {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `docker-registry` (no auth) on a free loopback port.
fn start_registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: {addr}\n  secret: t\n",
            root = dir.path().display()
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let mut child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Registry {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("docker-registry did not start");
}

#[test]
fn built_images_push_and_pull_bases_through_a_registry() {
    let registry = start_registry();
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
