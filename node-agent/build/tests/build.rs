//! Real builds (root): busybox base images imported from Debian's `busybox-static`, `RUN`
//! steps in berth-runc containers on overlay mounts, images written to a private store and
//! run by the node agent's container layer. Each test has its own data root and run root,
//! and its guard removes containers, mounts and directories even when it fails.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use berth_build::{BuildError, BuildOptions, Built, DockerfileSource, Env, Progress};
use berth_image::Store;
use berth_node_agent::container::{Containers, LogOptions, NetworkMode, RunOptions};
use berth_testkit::{bins, root};

/// target/<profile>: the test executable lives in its `deps/`.
fn bin_dir() -> PathBuf {
    bins::from_test_exe()
}

#[derive(Default)]
struct Recorder {
    steps: Mutex<Vec<(String, bool)>>,
    output: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn step(&self, _stage: &str, _i: usize, _n: usize, text: &str, cached: bool) {
        self.steps.lock().unwrap().push((text.to_owned(), cached));
    }
    fn output(&self, _stage: &str, line: &str) {
        self.output.lock().unwrap().push(line.to_owned());
    }
    fn warning(&self, _message: &str) {}
}

/// One test's data root, run root and build context; cleans up on drop.
struct T {
    dir: tempfile::TempDir,
    run: PathBuf,
    recorder: Arc<Recorder>,
    env: Env,
    containers: Containers,
}

impl T {
    fn new(name: &str) -> T {
        bins::ensure(&bin_dir(), &[bins::RUNC, bins::SHIM]);
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // Short: the shim's socket path must fit in sun_path.
        let run = PathBuf::from(format!("/run/bb-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&run);
        fs::create_dir_all(&run).unwrap();
        root::import_busybox(&data);
        let recorder = Arc::new(Recorder::default());
        let bins = bin_dir();
        let env = Env {
            data_root: data.clone(),
            runtime: bins.join("berth-runc"),
            run_root: run.join("build"),
            progress: recorder.clone(),
            pull: None,
        };
        let containers = root::open_containers(&data, &run.join("runc"), &bins).unwrap();
        fs::create_dir_all(dir.path().join("ctx")).unwrap();
        T {
            dir,
            run,
            recorder,
            env,
            containers,
        }
    }

    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.ctx().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn opts(&self, tag: &str) -> BuildOptions {
        let mut o = BuildOptions::new(self.ctx());
        o.tags = vec![tag.to_owned()];
        o
    }

    fn build(&self, opts: &BuildOptions) -> Result<Built, BuildError> {
        self.recorder.steps.lock().unwrap().clear();
        berth_build::build(&self.env, opts)
    }

    fn steps(&self) -> Vec<(String, bool)> {
        self.recorder.steps.lock().unwrap().clone()
    }

    /// Runs `image` (no network) to completion: exit code and output.
    fn run(&self, image: &str, cmd: &[&str]) -> (i32, String) {
        let record = self
            .containers
            .create(RunOptions {
                image: image.to_owned(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                network: NetworkMode::None,
                ..RunOptions::default()
            })
            .expect("create container");
        self.containers.start(&record.id, false).expect("start");
        let (_, code) = self.containers.wait(&record.id).expect("wait");
        let mut out = String::new();
        self.containers
            .logs(&record.id, &LogOptions::default(), |r| {
                out.push_str(&r.log);
                true
            })
            .expect("logs");
        self.containers.remove(&record.id, true).expect("rm");
        (code, out)
    }
}

impl Drop for T {
    fn drop(&mut self) {
        if let Ok(ids) = self.containers.ids() {
            for id in ids {
                let _ = self.containers.remove(&id, true);
            }
        }
        // Anything a failed step left mounted under the data root.
        if let Ok(mounts) = fs::read_to_string("/proc/self/mounts") {
            let root = self.dir.path().to_string_lossy().into_owned();
            let mut targets: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .filter(|t| t.starts_with(&root))
                .collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                let _ = Command::new("umount").args(["-l", t]).status();
            }
        }
        let _ = fs::remove_dir_all(&self.run);
    }
}

/// A static C program compiled on the host: busybox has no compiler, so the test compiles
/// and the build's first stage checks, installs and runs it.
fn static_hello(dest: &Path) {
    let src = dest.with_extension("c");
    fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"hello from scratch\");return 0;}\n",
    )
    .unwrap();
    let status = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(dest)
        .arg(&src)
        .status()
        .expect("cc (apt-get install gcc libc6-dev)");
    assert!(status.success(), "cc -static failed");
    fs::remove_file(src).unwrap();
}

#[test]
fn multi_stage_scratch_image_runs_and_rebuilds_from_cache() {
    let t = T::new("ms");
    static_hello(&t.ctx().join("hello"));
    t.write(
        "Dockerfile",
        "FROM busybox:latest AS build\n\
         WORKDIR /out\n\
         COPY hello /src/hello\n\
         RUN /src/hello > selftest.txt && grep -q 'hello from scratch' selftest.txt \\\n    && cp /src/hello /out/hello && chmod 0755 /out/hello\n\
         \n\
         FROM busybox:latest AS unused\n\
         RUN exit 1\n\
         \n\
         FROM scratch\n\
         COPY --from=build /out/hello /hello\n\
         CMD [\"/hello\"]\n",
    );
    let built = t.build(&t.opts("hello:1")).expect("first build");
    assert!(built.executed >= 5, "{built:?}");
    assert!(
        !t.steps().iter().any(|(s, _)| s == "RUN exit 1"),
        "a stage the target does not need is not built"
    );
    // The final image holds only the program (plus the one COPY layer).
    let store = Store::open(t.env.data_root.join("image")).unwrap();
    let target = store.lookup("hello:1").unwrap();
    let image = store.image(&target).unwrap();
    assert_eq!(image.id(), &built.id);
    assert_eq!(image.layers().len(), 1);
    let raw: serde_json::Value =
        serde_json::from_slice(&store.read_blob(image.id()).unwrap()).unwrap();
    assert_eq!(raw["config"]["Cmd"], serde_json::json!(["/hello"]));
    assert_eq!(raw["history"].as_array().unwrap().len(), 2);
    let (code, out) = t.run("hello:1", &[]);
    assert_eq!((code, out.as_str()), (0, "hello from scratch\n"));

    // Everything again: every step from the cache, the very same image.
    let again = t.build(&t.opts("hello:1")).expect("second build");
    assert_eq!(again.executed, 0, "{:?}", t.steps());
    assert_eq!(again.cached, built.executed);
    assert_eq!(again.id, built.id);
    assert!(
        t.steps()
            .iter()
            .filter(|(s, _)| !s.starts_with("FROM"))
            .all(|(_, c)| *c)
    );
}

#[test]
fn a_changed_file_rebuilds_only_from_its_copy() {
    let t = T::new("chg");
    t.write("a.txt", "a1\n");
    t.write("b.txt", "b1\n");
    t.write(
        "Dockerfile",
        "FROM busybox:latest\nCOPY a.txt /a.txt\nRUN cat /a.txt > /seen-a\nCOPY b.txt /b.txt\nRUN cat /b.txt > /seen-b\nENV DONE=1\n",
    );
    let first = t.build(&t.opts("chg:1")).unwrap();
    assert_eq!(first.executed, 5);
    // Same content, new mtime: still a hit (content hashes, not times).
    t.write("b.txt", "b1\n");
    assert_eq!(t.build(&t.opts("chg:1")).unwrap().executed, 0);
    t.write("b.txt", "b2\n");
    let second = t.build(&t.opts("chg:1")).unwrap();
    assert_eq!((second.cached, second.executed), (2, 3), "{:?}", t.steps());
    assert_eq!(
        t.steps()
            .iter()
            .filter(|(_, cached)| *cached)
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        ["COPY a.txt /a.txt", "RUN cat /a.txt > /seen-a"]
    );
    let (_, out) = t.run("chg:1", &["cat", "/seen-a", "/seen-b"]);
    assert_eq!(out, "a1\nb2\n");
    // --no-cache executes everything.
    let mut o = t.opts("chg:1");
    o.no_cache = true;
    assert_eq!(t.build(&o).unwrap().executed, 5);
}

#[test]
fn dockerignore_keeps_files_out_of_the_context() {
    let t = T::new("ign");
    t.write("keep.txt", "k");
    t.write("secret.env", "s");
    t.write("logs/app.log", "l");
    t.write("logs/keep.log", "l");
    t.write(".dockerignore", "*.env\nlogs\n!logs/keep.log\n");
    t.write(
        "Dockerfile",
        "FROM busybox:latest\nCOPY . /ctx/\nRUN test -e /ctx/keep.txt && test ! -e /ctx/secret.env && test ! -e /ctx/logs/app.log && test -e /ctx/logs/keep.log\n",
    );
    t.build(&t.opts("ign:1"))
        .expect("build sees only what .dockerignore lets in");
    // Naming an ignored file is an error, as in Docker.
    t.write("Dockerfile", "FROM busybox:latest\nCOPY secret.env /\n");
    let e = t.build(&t.opts("ign:2")).unwrap_err().to_string();
    assert!(
        e.contains("Dockerfile:2") && e.contains("secret.env"),
        "{e}"
    );
}

#[test]
fn args_env_user_and_workdir_reach_build_and_run_time() {
    let t = T::new("var");
    t.write(
        "Dockerfile",
        "ARG BASE=busybox:latest\n\
         FROM ${BASE}\n\
         ARG VERSION=1\n\
         ARG BASE\n\
         ENV APP_VERSION=v${VERSION} GREETING=\"hi there\"\n\
         LABEL version=$APP_VERSION\n\
         RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group\n\
         WORKDIR /opt/$APP_VERSION\n\
         RUN echo \"$VERSION $APP_VERSION $BASE $GREETING\" > args.txt && chown app /opt/$APP_VERSION\n\
         USER app\n\
         WORKDIR work\n\
         RUN id -u > /tmp/build-uid\n\
         CMD [\"sh\", \"-c\", \"id -u; pwd; cat ../args.txt /tmp/build-uid; echo $APP_VERSION\"]\n",
    );
    let mut o = t.opts("vars:1");
    o.build_args = BTreeMap::from([("VERSION".to_owned(), "2".to_owned())]);
    t.build(&o).expect("build");
    let (code, out) = t.run("vars:1", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "1234\n/opt/v2/work\n2 v2 busybox:latest hi there\n1234\nv2\n"
    );
    let store = Store::open(t.env.data_root.join("image")).unwrap();
    let image = store.image(&store.lookup("vars:1").unwrap()).unwrap();
    let raw: serde_json::Value =
        serde_json::from_slice(&store.read_blob(image.id()).unwrap()).unwrap();
    assert_eq!(raw["config"]["Labels"]["version"], "v2");
    assert_eq!(raw["config"]["User"], "app");
    let env: Vec<&str> = raw["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"APP_VERSION=v2"), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("VERSION=")),
        "ARGs are not persisted"
    );
}

#[test]
fn a_failing_run_names_step_line_and_exit_code() {
    let t = T::new("fail");
    t.write(
        "Dockerfile.fail",
        "FROM busybox:latest\nRUN echo fine\n# a comment\nRUN echo about to fail && \\\n    exit 7\nRUN echo never\n",
    );
    let mut o = t.opts("fail:1");
    o.dockerfile = DockerfileSource::Path("Dockerfile.fail".into());
    let e = t.build(&o).unwrap_err();
    match &e {
        BuildError::RunFailed {
            file,
            line,
            code,
            step,
            ..
        } => {
            assert_eq!((file.as_str(), *line, *code), ("Dockerfile.fail", 4, 7));
            assert_eq!(step, "[stage-0 3/4]");
        }
        other => panic!("unexpected error {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.starts_with("Dockerfile.fail:4: step [stage-0 3/4]"),
        "{msg}"
    );
    assert!(msg.ends_with("code: 7"), "{msg}");
    assert!(
        t.recorder
            .output
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "about to fail")
    );
    // Nothing was left mounted or in the step scratch space.
    let tmp = t.env.data_root.join("build/tmp");
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    // An inline Dockerfile with a missing base image says so on one line.
    o.dockerfile = DockerfileSource::Inline("FROM nothing-here:1\nRUN true\n".into());
    let e = t.build(&o).unwrap_err().to_string();
    assert!(
        e.contains("nothing-here:1") && e.contains("not found locally"),
        "{e}"
    );
}

#[test]
fn heredocs_add_archives_and_whiteouts() {
    let t = T::new("misc");
    // A local tar archive ADDed is extracted.
    fs::create_dir_all(t.dir.path().join("arch/inner")).unwrap();
    fs::write(t.dir.path().join("arch/inner/f.txt"), "from tar\n").unwrap();
    let st = Command::new("tar")
        .arg("-czf")
        .arg(t.ctx().join("bundle.tgz"))
        .arg("-C")
        .arg(t.dir.path().join("arch"))
        .arg("inner")
        .status()
        .unwrap();
    assert!(st.success());
    t.write(
        "Dockerfile",
        "FROM busybox:latest\n\
         ADD bundle.tgz /unpacked/\n\
         COPY <<EOF /etc/greeting\nhello \"$NAME\"\nEOF\n\
         ENV NAME=world\n\
         RUN <<EOF\nset -e\necho scripted > /scripted\nrm /etc/group\nEOF\n\
         RUN mkdir -p /usr/lib2 && ln -s usr/lib2 /lib2\n\
         COPY <<EOF /lib2/conf\nthrough a link\nEOF\n\
         RUN touch /tmp/old\n\
         RUN rm -rf /tmp && mkdir /tmp && touch /tmp/new\n\
         CMD [\"sh\", \"-c\", \"cat /unpacked/inner/f.txt /etc/greeting /scripted; test -e /etc/group || echo no-group; ls /tmp; test -L /lib2 && cat /usr/lib2/conf\"]\n",
    );
    t.build(&t.opts("misc:1")).expect("build");
    let (code, out) = t.run("misc:1", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "from tar\nhello \"\"\nscripted\nno-group\nnew\nthrough a link\n"
    );
    // ADD of an unreachable URL fails clearly.
    t.write(
        "Dockerfile",
        "FROM busybox:latest\nADD http://127.0.0.1:9/file.txt /f\n",
    );
    let e = t.build(&t.opts("misc:2")).unwrap_err().to_string();
    assert!(
        e.starts_with("Dockerfile:2: ADD http://127.0.0.1:9/file.txt: cannot download"),
        "{e}"
    );
}

#[test]
fn onbuild_triggers_and_independent_stages() {
    let t = T::new("onb");
    t.write(
        "Dockerfile",
        "FROM busybox:latest\nONBUILD RUN echo triggered > /trig\nCMD [\"true\"]\n",
    );
    t.build(&t.opts("parent:1")).expect("parent");
    // Two stages that need nothing from each other, joined by the last one.
    t.write(
        "Dockerfile",
        "FROM parent:1 AS left\n\
         RUN echo left > /side\n\
         FROM busybox:latest AS right\n\
         RUN echo right > /side\n\
         FROM busybox:latest\n\
         COPY --from=left /trig /trig\n\
         COPY --from=left /side /l\n\
         COPY --from=1 /side /r\n\
         CMD [\"cat\", \"/trig\", \"/l\", \"/r\"]\n",
    );
    t.build(&t.opts("child:1")).expect("child");
    let (code, out) = t.run("child:1", &[]);
    assert_eq!((code, out.as_str()), (0, "triggered\nleft\nright\n"));
    let store = Store::open(t.env.data_root.join("image")).unwrap();
    let image = store.image(&store.lookup("child:1").unwrap()).unwrap();
    let raw: serde_json::Value =
        serde_json::from_slice(&store.read_blob(image.id()).unwrap()).unwrap();
    assert!(raw["config"].get("OnBuild").is_none());
}
