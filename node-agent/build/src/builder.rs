//! The build: resolve the target stage and the stages it needs, run independent stages in
//! parallel (one thread each, in waves), execute each instruction against the build state
//! (through the cache), and write the final OCI image (config with history and diff_ids,
//! an OCI manifest) into berth's store under the requested names.
//!
//! Variables: `ARG`s before the first `FROM` are visible in `FROM` lines and in stages
//! that re-declare them; an `ARG` in a stage takes `--build-arg`, else its default; `ENV`
//! wins over an `ARG` of the same name; `RUN` sees both as environment variables (and its
//! cache key includes the `ARG` values in scope, as Docker's does).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_image::{Digest, Platform, Reference, Snapshotter, Store, media_types, now_rfc3339};
use serde_json::{Map, Value, json};

use crate::cache::{Cache, State, chain};
use crate::copy::{self, Attrs, Source, SourceTree};
use crate::dockerfile::words::{expand, expand_vars};
use crate::dockerfile::{
    self, CommandForm, CopyArgs, Dockerfile, Health, Instruction, Kind, Stage,
};
use crate::ignore::Ignore;
use crate::layer::{self, Layer};
use crate::mount::Mount;
use crate::run::{BuildNetwork, RunStep, resolve_user, run_step};
use crate::{BuildError, BuildOptions, Built, DockerfileSource, Env, io_err};

/// Everything shared by the stages of one build.
struct Ctx<'a> {
    env: &'a Env,
    opts: &'a BuildOptions,
    df: &'a Dockerfile,
    store: Store,
    snapshots: Snapshotter,
    cache: Cache,
    ignore: Ignore,
    meta: BTreeMap<String, String>,
    /// Meta args declared (with or without a value).
    meta_declared: BTreeSet<String>,
    work_root: PathBuf,
    empty: PathBuf,
    used_args: Mutex<BTreeSet<String>>,
    executed: AtomicUsize,
    cached: AtomicUsize,
}

/// Builds one Dockerfile and records the image under `opts.tags` (dangling without tags).
pub fn build(env: &Env, opts: &BuildOptions) -> Result<Built, BuildError> {
    let (file, text) = match &opts.dockerfile {
        DockerfileSource::Inline(text) => ("<inline Dockerfile>".to_owned(), text.clone()),
        DockerfileSource::Path(p) => {
            let path = if p.is_absolute() {
                p.clone()
            } else {
                opts.context.join(p)
            };
            let text = fs::read_to_string(&path).map_err(io_err("read", &path))?;
            (p.display().to_string(), text)
        }
    };
    let df = dockerfile::parse(&file, &text)?;
    let ignore_path = opts.context.join(".dockerignore");
    let ignore = match fs::read_to_string(&ignore_path) {
        Ok(text) => Ignore::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(io_err("read", &ignore_path)(e)),
    };
    if !opts.context.is_dir() {
        return Err(BuildError::Io {
            op: "open build context",
            path: opts.context.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let store = Store::open(env.data_root.join("image"))?;
    let _lease = store.lease()?;
    let snapshots = Snapshotter::new(&store)?;
    let cache = Cache::open(&env.data_root)?;
    let work_root = env.data_root.join("build").join("tmp");
    let empty = env.data_root.join("build").join("empty");
    for d in [&work_root, &empty] {
        fs::create_dir_all(d).map_err(io_err("create directory", d))?;
    }

    // Meta args, in order; each may use the ones before it.
    let mut meta = BTreeMap::new();
    let mut meta_declared = BTreeSet::new();
    for ins in &df.meta_args {
        if let Kind::Arg(args) = &ins.kind {
            for (name, default) in args {
                meta_declared.insert(name.clone());
                let value = match opts.build_args.get(name) {
                    Some(v) => Some(v.clone()),
                    None => match default {
                        Some(d) => Some(
                            expand(d, df.escape, &|n| meta.get(n).cloned())
                                .map_err(|e| instr_err(&df.file, ins.line, e.to_string()))?,
                        ),
                        None => None,
                    },
                };
                if let Some(v) = value {
                    meta.insert(name.clone(), v);
                }
            }
        }
    }
    let ctx = Ctx {
        env,
        opts,
        df: &df,
        store,
        snapshots,
        cache,
        ignore,
        used_args: Mutex::new(meta_declared.clone()),
        meta,
        meta_declared,
        work_root,
        empty,
        executed: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
    };

    let target = match &opts.target {
        Some(t) => {
            df.stage(t)
                .filter(|s| s.name.is_some() || t.parse::<usize>().is_ok())
                .ok_or_else(|| BuildError::NoSuchTarget(t.clone()))?
                .index
        }
        None => df.stages.len() - 1,
    };
    let deps: Vec<BTreeSet<usize>> = df.stages.iter().map(|s| ctx.stage_deps(s)).collect();
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(deps[i].iter().copied());
        }
    }

    // Waves of stages whose dependencies are done, each wave in parallel.
    let mut done: HashMap<usize, State> = HashMap::new();
    while !needed.iter().all(|i| done.contains_key(i)) {
        let ready: Vec<usize> = needed
            .iter()
            .copied()
            .filter(|i| !done.contains_key(i) && deps[*i].iter().all(|d| done.contains_key(d)))
            .collect();
        if ready.is_empty() {
            return Err(BuildError::Internal(
                "stages depend on each other in a cycle".into(),
            ));
        }
        let results: Vec<(usize, Result<State, BuildError>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = ready
                .iter()
                .map(|&i| {
                    let ctx = &ctx;
                    let done = &done;
                    let stage = &ctx.df.stages[i];
                    (i, scope.spawn(move || ctx.build_stage(stage, done)))
                })
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| {
                    (
                        i,
                        h.join().unwrap_or_else(|_| {
                            Err(BuildError::Internal("a build stage panicked".into()))
                        }),
                    )
                })
                .collect()
        });
        for (i, r) in results {
            done.insert(i, r?);
        }
    }
    let unused: Vec<String> = {
        let used = ctx.used_args.lock().map(|u| u.clone()).unwrap_or_default();
        opts.build_args
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    };
    if !unused.is_empty() {
        env.progress.warning(&format!(
            "build arguments were not consumed: {}",
            unused.join(", ")
        ));
    }
    let state = done
        .remove(&target)
        .ok_or_else(|| BuildError::Internal("target stage not built".into()))?;
    let (id, manifest) = write_image(&ctx.store, &state, &opts.labels)?;
    if opts.tags.is_empty() {
        ctx.store.put_dangling(&manifest)?;
    }
    for tag in &opts.tags {
        let reference = Reference::parse(tag)?;
        // An unchanged name needs no record update (and no fsync): the common cached rebuild.
        if ctx.store.resolve(&reference).ok().as_ref() != Some(&manifest) {
            ctx.store.put_image(&reference, &manifest)?;
        }
    }
    Ok(Built {
        id,
        manifest,
        executed: ctx.executed.load(Ordering::Relaxed),
        cached: ctx.cached.load(Ordering::Relaxed),
    })
}

fn instr_err(file: &str, line: usize, message: impl Into<String>) -> BuildError {
    BuildError::Instruction {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

/// Per-stage variables: ARG values in scope.
struct Scope {
    args: BTreeMap<String, String>,
    cmd_set: bool,
}

fn env_list(config: &Value) -> Vec<String> {
    config["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn env_get(config: &Value, name: &str) -> Option<String> {
    env_list(config).iter().rev().find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    })
}

fn set_env(config: &mut Value, key: &str, value: &str) {
    let mut list = env_list(config);
    list.retain(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) != key);
    list.push(format!("{key}={value}"));
    config["Env"] = json!(list);
}

impl Ctx<'_> {
    fn stage_label(&self, stage: &Stage) -> String {
        stage
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", stage.index))
    }

    /// The stage a name refers to, among those before `before` (FROM) or any (COPY).
    fn stage_named(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.df
            .stages
            .iter()
            .take(before)
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
    }

    fn expand_base(&self, stage: &Stage) -> Result<String, BuildError> {
        expand(&stage.base, self.df.escape, &|n| self.meta.get(n).cloned())
            .map_err(|e| instr_err(&self.df.file, stage.line, e.to_string()))
    }

    fn stage_deps(&self, stage: &Stage) -> BTreeSet<usize> {
        let mut deps = BTreeSet::new();
        if let Ok(base) = self.expand_base(stage) {
            if let Some(i) = self.stage_named(&base, stage.index) {
                deps.insert(i);
            }
        }
        for ins in &stage.instructions {
            if let Kind::Copy(CopyArgs { from: Some(f), .. }) = &ins.kind {
                let f = expand(f, self.df.escape, &|n| self.meta.get(n).cloned())
                    .unwrap_or_else(|_| f.clone());
                if let Some(i) = self.copy_source_stage(&f, stage.index) {
                    deps.insert(i);
                }
            }
        }
        deps
    }

    /// `--from=` naming a stage (by name, or by an index of an earlier stage).
    fn copy_source_stage(&self, from: &str, current: usize) -> Option<usize> {
        self.stage_named(from, self.df.stages.len())
            .filter(|&i| i != current)
            .or_else(|| from.parse::<usize>().ok().filter(|&i| i < current))
    }

    /// A base image resolved in the store, pulled when asked or missing.
    fn image_state(&self, name: &str) -> Result<State, BuildError> {
        let pull = |why_missing: bool| -> Result<(), BuildError> {
            match &self.env.pull {
                Some(f) => f(name).map_err(|reason| BuildError::Pull {
                    image: name.to_owned(),
                    reason,
                }),
                None if why_missing => Err(BuildError::BaseImageMissing {
                    image: name.to_owned(),
                }),
                None => Err(BuildError::Pull {
                    image: name.to_owned(),
                    reason: "no registry access configured".into(),
                }),
            }
        };
        if self.opts.pull {
            pull(false)?;
        }
        let target = match self.store.lookup(name) {
            Ok(t) => t,
            Err(berth_image::StoreError::ImageNotFound { .. }) if !self.opts.pull => {
                pull(true)?;
                self.store
                    .lookup(name)
                    .map_err(|_| BuildError::BaseImageMissing {
                        image: name.to_owned(),
                    })?
            }
            Err(berth_image::StoreError::ImageNotFound { .. }) => {
                return Err(BuildError::BaseImageMissing {
                    image: name.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let image = self.store.image(&target)?;
        self.snapshots.unpack(&image)?;
        let raw: Value = serde_json::from_slice(&self.store.read_blob(image.id())?)
            .map_err(|e| BuildError::Internal(format!("config of {name}: {e}")))?;
        let diff_ids = image.diff_ids()?;
        let layers = image
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(desc, diff_id)| {
                Ok(Layer {
                    diff_id,
                    blob: Digest::from_oci(desc.digest())
                        .map_err(|e| BuildError::Internal(e.to_string()))?,
                    size: desc.size(),
                    media_type: desc.media_type().to_string(),
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let host = Platform::host();
        Ok(State {
            key: chain("", &format!("image {}", image.id())),
            layers,
            config: match &raw["config"] {
                Value::Object(m) => Value::Object(m.clone()),
                _ => json!({}),
            },
            history: raw["history"].as_array().cloned().unwrap_or_default(),
            os: raw["os"].as_str().unwrap_or(&host.os).to_owned(),
            architecture: raw["architecture"]
                .as_str()
                .unwrap_or(&host.architecture)
                .to_owned(),
        })
    }

    fn build_stage(
        &self,
        stage: &Stage,
        done: &HashMap<usize, State>,
    ) -> Result<State, BuildError> {
        let label = self.stage_label(stage);
        let total = stage.instructions.len() + 1;
        let base = self.expand_base(stage)?;
        self.env
            .progress
            .step(&label, 1, total, &format!("FROM {base}"), false);
        let mut state = if base.eq_ignore_ascii_case("scratch") {
            let host = Platform::host();
            State {
                key: chain("", "scratch"),
                layers: Vec::new(),
                config: json!({}),
                history: Vec::new(),
                os: host.os,
                architecture: host.architecture,
            }
        } else if let Some(i) = self.stage_named(&base, stage.index) {
            done.get(&i)
                .cloned()
                .ok_or_else(|| BuildError::Internal(format!("stage {base} not built")))?
        } else {
            self.image_state(&base)
                .map_err(|e| self.at(stage.line, e))?
        };
        let mut scope = Scope {
            args: BTreeMap::new(),
            cmd_set: false,
        };
        // ONBUILD triggers of the base image run first, then are dropped.
        if let Some(triggers) = state
            .config
            .get("OnBuild")
            .and_then(Value::as_array)
            .cloned()
        {
            if let Some(obj) = state.config.as_object_mut() {
                obj.remove("OnBuild");
            }
            for t in triggers.iter().filter_map(Value::as_str) {
                let ins = dockerfile::parse_instruction(&self.df.file, stage.line, t)?;
                state = self.step(stage, &label, &ins, state, &mut scope, done)?;
            }
        }
        for ins in &stage.instructions {
            state = self.step(stage, &label, ins, state, &mut scope, done)?;
        }
        Ok(state)
    }

    fn at(&self, line: usize, e: BuildError) -> BuildError {
        match e {
            e @ (BuildError::Instruction { .. }
            | BuildError::RunFailed { .. }
            | BuildError::Parse(_)
            | BuildError::At { .. }) => e,
            other => BuildError::At {
                file: self.df.file.clone(),
                line,
                inner: Box::new(other),
            },
        }
    }

    fn lookup<'s>(
        &'s self,
        state: &'s State,
        scope: &'s Scope,
    ) -> impl Fn(&str) -> Option<String> + 's {
        move |name| env_get(&state.config, name).or_else(|| scope.args.get(name).cloned())
    }

    fn step_number(&self, stage: &Stage, ins: &Instruction) -> usize {
        stage
            .instructions
            .iter()
            .position(|x| std::ptr::eq(x, ins))
            .map_or(1, |p| p + 2)
    }

    /// One instruction: through the cache unless it only touches build variables.
    fn step(
        &self,
        stage: &Stage,
        label: &str,
        ins: &Instruction,
        state: State,
        scope: &mut Scope,
        done: &HashMap<usize, State>,
    ) -> Result<State, BuildError> {
        let n = self.step_number(stage, ins);
        let total = stage.instructions.len() + 1;
        let file = &self.df.file;
        let esc = self.df.escape;
        if let Kind::Arg(args) = &ins.kind {
            self.env.progress.step(label, n, total, &ins.text, false);
            for (name, default) in args {
                if let Ok(mut used) = self.used_args.lock() {
                    used.insert(name.clone());
                }
                let value = match self.opts.build_args.get(name) {
                    Some(v) => Some(v.clone()),
                    None => match default {
                        Some(d) => Some(
                            expand(d, esc, &self.lookup(&state, scope))
                                .map_err(|e| instr_err(file, ins.line, e.to_string()))?,
                        ),
                        None if self.meta_declared.contains(name) => self.meta.get(name).cloned(),
                        None => None,
                    },
                };
                if let Some(v) = value {
                    scope.args.insert(name.clone(), v);
                }
            }
            return Ok(state);
        }
        let x = |w: &str| -> Result<String, BuildError> {
            expand(w, esc, &self.lookup(&state, scope))
                .map_err(|e| instr_err(file, ins.line, e.to_string()))
        };
        // What the step means, after expansion: the cache key's input.
        let mut config = state.config.clone();
        let mut copy_plan = None;
        let mut cmd_set = false;
        let desc = match &ins.kind {
            Kind::Env(pairs) => {
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let (k, v) = (x(k)?, x(v)?);
                    set_env(&mut config, &k, &v);
                    parts.push(format!("{k}={v}"));
                }
                format!("ENV {}", parts.join(" "))
            }
            Kind::Label(pairs) => {
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let (k, v) = (x(k)?, x(v)?);
                    if !config["Labels"].is_object() {
                        config["Labels"] = json!({});
                    }
                    config["Labels"][&k] = json!(v);
                    parts.push(format!("{k}={v}"));
                }
                format!("LABEL {}", parts.join(" "))
            }
            Kind::Workdir(w) => {
                let w = x(w)?;
                let cur = config["WorkingDir"].as_str().unwrap_or("/").to_owned();
                let abs = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", cur.trim_end_matches('/'))
                };
                let abs = format!("/{}", crate::ignore::clean(&abs));
                config["WorkingDir"] = json!(abs);
                format!("WORKDIR {abs}")
            }
            Kind::User(u) => {
                let u = x(u)?;
                config["User"] = json!(u);
                format!("USER {u}")
            }
            Kind::Cmd(c) => {
                cmd_set = true;
                config["Cmd"] = json!(self.command_args(&config, c));
                format!("CMD {}", config["Cmd"])
            }
            Kind::Entrypoint(c) => {
                config["Entrypoint"] = json!(self.command_args(&config, c));
                if !scope.cmd_set {
                    if let Some(o) = config.as_object_mut() {
                        o.remove("Cmd");
                    }
                }
                format!("ENTRYPOINT {}", config["Entrypoint"])
            }
            Kind::Shell(s) => {
                config["Shell"] = json!(s);
                format!("SHELL {}", config["Shell"])
            }
            Kind::Expose(ports) => {
                if !config["ExposedPorts"].is_object() {
                    config["ExposedPorts"] = json!({});
                }
                let mut parts = Vec::new();
                for p in ports {
                    let p = x(p)?;
                    let p = if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    config["ExposedPorts"][&p] = json!({});
                    parts.push(p);
                }
                format!("EXPOSE {}", parts.join(" "))
            }
            Kind::Volume(paths) => {
                if !config["Volumes"].is_object() {
                    config["Volumes"] = json!({});
                }
                let mut parts = Vec::new();
                for p in paths {
                    let p = x(p)?;
                    config["Volumes"][&p] = json!({});
                    parts.push(p);
                }
                format!("VOLUME {}", parts.join(" "))
            }
            Kind::StopSignal(s) => {
                let s = x(s)?;
                config["StopSignal"] = json!(s);
                format!("STOPSIGNAL {s}")
            }
            Kind::Healthcheck(h) => {
                config["Healthcheck"] = healthcheck_json(h);
                format!("HEALTHCHECK {}", config["Healthcheck"])
            }
            Kind::Onbuild(t) => {
                let mut list = config["OnBuild"].as_array().cloned().unwrap_or_default();
                list.push(json!(t));
                config["OnBuild"] = json!(list);
                format!("ONBUILD {t}")
            }
            Kind::Maintainer(m) => {
                if !config["Labels"].is_object() {
                    config["Labels"] = json!({});
                }
                config["Labels"]["maintainer"] = json!(m);
                format!("MAINTAINER {m}")
            }
            Kind::Run {
                command,
                network,
                heredocs,
            } => {
                let args = self.run_args(&config, command, heredocs);
                let net = match network.as_deref() {
                    Some(n) => BuildNetwork::parse(n).unwrap_or(self.opts.network),
                    None => self.opts.network,
                };
                let visible: Vec<String> = scope
                    .args
                    .iter()
                    .filter(|(k, _)| env_get(&config, k).is_none())
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("RUN {} args={} net={net:?}", json!(args), json!(visible))
            }
            Kind::Copy(c) | Kind::Add(c) => {
                let is_add = matches!(ins.kind, Kind::Add(_));
                let (d, plan) = self
                    .copy_desc(ins, c, is_add, &state, scope, done)
                    .map_err(|e| self.at(ins.line, e))?;
                copy_plan = Some(plan);
                d
            }
            Kind::Arg(_) => "ARG".to_owned(),
        };
        if cmd_set {
            scope.cmd_set = true;
        }
        let key = chain(&state.key, &desc);
        if !self.opts.no_cache {
            if let Some(hit) = self.cache.get(&self.store, &key) {
                self.env.progress.step(label, n, total, &ins.text, true);
                self.cached.fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
        }
        self.env.progress.step(label, n, total, &ins.text, false);
        self.executed.fetch_add(1, Ordering::Relaxed);
        let mut next = State {
            key,
            layers: state.layers.clone(),
            config,
            history: state.history.clone(),
            os: state.os.clone(),
            architecture: state.architecture.clone(),
        };
        let new_layer = match &ins.kind {
            Kind::Run { network, .. } => {
                let net = match network.as_deref() {
                    Some(n) => BuildNetwork::parse(n).unwrap_or(self.opts.network),
                    None => self.opts.network,
                };
                Some(self.exec_run(
                    stage,
                    label,
                    ins,
                    &state,
                    &next.config,
                    scope,
                    net,
                    n,
                    total,
                )?)
            }
            Kind::Copy(_) | Kind::Add(_) => {
                // The plan keeps the source mount alive until its layer is written.
                let plan = copy_plan.take().unwrap_or_default();
                Some(
                    self.write_copy(&state, &plan.entries, &plan.attrs)
                        .map_err(|e| self.at(ins.line, e))?,
                )
            }
            Kind::Workdir(_) => {
                let dir = next.config["WorkingDir"].as_str().unwrap_or("/").to_owned();
                self.ensure_dir(&state, &dir)
                    .map_err(|e| self.at(ins.line, e))?
            }
            _ => None,
        };
        let created_by = match &ins.kind {
            Kind::Run { .. } => desc.split(" args=").next().unwrap_or(&desc).to_owned(),
            _ => ins.text.clone(),
        };
        let mut h = json!({
            "created": now_rfc3339(),
            "created_by": created_by,
            "comment": "berth build",
        });
        match new_layer {
            Some(l) => next.layers.push(l),
            None => h["empty_layer"] = json!(true),
        }
        next.history.push(h);
        self.cache.put(&next)?;
        Ok(next)
    }

    fn shell(&self, config: &Value) -> Vec<String> {
        config["Shell"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn command_args(&self, config: &Value, c: &CommandForm) -> Vec<String> {
        match c {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => {
                let mut v = self.shell(config);
                v.push(s.clone());
                v
            }
        }
    }

    /// A `RUN`'s argv; heredocs become a script (`RUN <<EOF`) or shell heredocs again.
    fn run_args(
        &self,
        config: &Value,
        command: &CommandForm,
        heredocs: &[dockerfile::Heredoc],
    ) -> Vec<String> {
        match command {
            CommandForm::Shell(s) if !heredocs.is_empty() => {
                let trimmed = s.trim();
                let mut v = self.shell(config);
                let only = heredocs.len() == 1
                    && trimmed
                        .trim_start_matches("<<")
                        .trim_start_matches('-')
                        .trim_matches(['"', '\''])
                        == heredocs[0].name;
                if only {
                    v.push(heredocs[0].content.clone());
                } else {
                    let mut script = s.clone();
                    script.push('\n');
                    for h in heredocs {
                        script.push_str(&h.content);
                        script.push_str(&h.name);
                        script.push('\n');
                    }
                    v.push(script);
                }
                v
            }
            other => self.command_args(config, other),
        }
    }

    fn lowers(&self, state: &State) -> Vec<PathBuf> {
        state
            .layers
            .iter()
            .rev()
            .map(|l| self.snapshots.layer_dir(&l.diff_id))
            .collect()
    }

    /// A read-only view of a state: a mount, or the empty dir for a state without layers.
    fn view(&self, state: &State, dir: &Path) -> Result<(Option<Mount>, PathBuf), BuildError> {
        if state.layers.is_empty() {
            return Ok((None, self.empty.clone()));
        }
        for l in &state.layers {
            layer::ensure_unpacked(&self.store, &self.snapshots, l)?;
        }
        let target = dir.join("view");
        fs::create_dir_all(&target).map_err(io_err("create directory", &target))?;
        let m = Mount::overlay(&self.lowers(state), None, &self.empty, &target)?;
        Ok((Some(m), target))
    }

    fn work_dir(&self) -> Result<WorkDir, BuildError> {
        let path = self.work_root.join(layer::unique(""));
        fs::create_dir_all(&path).map_err(io_err("create directory", &path))?;
        Ok(WorkDir(path))
    }

    #[allow(clippy::too_many_arguments)]
    fn exec_run(
        &self,
        stage: &Stage,
        label: &str,
        ins: &Instruction,
        state: &State,
        config: &Value,
        scope: &Scope,
        network: BuildNetwork,
        n: usize,
        total: usize,
    ) -> Result<Layer, BuildError> {
        let Kind::Run {
            command, heredocs, ..
        } = &ins.kind
        else {
            return Err(BuildError::Internal("not a RUN".into()));
        };
        for l in &state.layers {
            layer::ensure_unpacked(&self.store, &self.snapshots, l)?;
        }
        let mut env = env_list(config);
        for (k, v) in &scope.args {
            if env_get(config, k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        let work = self.work_dir()?;
        let lowers = self.lowers(state);
        let progress = &self.env.progress;
        let output = |line: &str| progress.output(label, line);
        let result = run_step(&RunStep {
            runtime: &self.env.runtime,
            run_root: &self.env.run_root,
            lowers: &lowers,
            empty: &self.empty,
            work: &work.0,
            args: self.run_args(config, command, heredocs),
            env,
            cwd: config["WorkingDir"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("/")
                .to_owned(),
            user: config["User"].as_str().unwrap_or("").to_owned(),
            network,
            shm_size: self.opts.shm_size,
            output: &output,
        })
        .map_err(|e| self.at(ins.line, e))?;
        let _ = stage;
        if result.code != 0 {
            return Err(BuildError::RunFailed {
                file: self.df.file.clone(),
                line: ins.line,
                step: format!("[{label} {n}/{total}]"),
                instruction: ins.text.clone(),
                code: result.code,
            });
        }
        layer::write_layer(&self.store, &self.snapshots, |out| {
            layer::append_upper(out, &result.upper)
        })
    }

    fn copy_desc(
        &self,
        ins: &Instruction,
        c: &CopyArgs,
        is_add: bool,
        state: &State,
        scope: &Scope,
        done: &HashMap<usize, State>,
    ) -> Result<(String, CopyPlan), BuildError> {
        let esc = self.df.escape;
        let lookup = self.lookup(state, scope);
        let x = |w: &str| -> Result<String, BuildError> {
            expand(w, esc, &lookup).map_err(|e| instr_err(&self.df.file, ins.line, e.to_string()))
        };
        let dest_raw = x(&c.dest)?;
        let workdir = state.config["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_owned();
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            let mut d = format!("{}/{}", workdir.trim_end_matches('/'), dest_raw);
            if dest_raw == "." || dest_raw == "./" {
                d.push('/');
            }
            d
        };
        let work = self.work_dir()?;
        // The current state, for the destination and for --chown names.
        let (cur_mount, cur) = self.view(state, &work.0)?;
        // Symlinks on the way to the destination resolve inside the image, as in Docker.
        let trailing = dest.ends_with('/');
        let clean = crate::ignore::clean(&dest);
        let full = copy::resolve_in_root(&cur, &clean);
        let dest_is_dir = fs::metadata(cur.join(&full)).is_ok_and(|m| m.is_dir());
        let dest = if trailing || dest_is_dir || clean.is_empty() {
            format!("/{full}/")
        } else {
            match clean.rsplit_once('/') {
                Some((dir, last)) => format!("/{}/{last}", copy::resolve_in_root(&cur, dir)),
                None => format!("/{clean}"),
            }
        };
        let attrs = Attrs {
            uid: 0,
            gid: 0,
            chmod: c.chmod.as_deref().and_then(copy::parse_chmod),
        };
        let attrs = match &c.chown {
            Some(chown) => {
                let chown = x(chown)?;
                let (uid, gid, _) = resolve_user(&cur, &chown)?;
                let gid = if chown.contains(':') { gid } else { uid };
                Attrs { uid, gid, ..attrs }
            }
            None => attrs,
        };
        drop(cur_mount);

        // Sources: heredocs, URLs (ADD) and paths in the context / a stage / an image.
        let mut sources = Vec::new();
        for s in &c.sources {
            if let Some(marker) = s.strip_prefix("<<") {
                let name = marker.trim_start_matches('-').trim_matches(['"', '\'']);
                let h = c.heredocs.iter().find(|h| h.name == name).ok_or_else(|| {
                    instr_err(&self.df.file, ins.line, format!("no heredoc {name}"))
                })?;
                let content = if h.expand {
                    expand_vars(&h.content, esc, &lookup)
                        .map_err(|e| instr_err(&self.df.file, ins.line, e.to_string()))?
                } else {
                    h.content.clone()
                };
                sources.push(Source::Content {
                    name: name.to_owned(),
                    bytes: content.into_bytes(),
                });
                continue;
            }
            let s = x(s)?;
            if is_add && (s.starts_with("http://") || s.starts_with("https://")) {
                let bytes = download(&s)?;
                let name = s
                    .split(['?', '#'])
                    .next()
                    .unwrap_or(&s)
                    .rsplit('/')
                    .find(|p| !p.is_empty())
                    .unwrap_or("download")
                    .to_owned();
                sources.push(Source::Content { name, bytes });
                continue;
            }
            if is_add && s.starts_with("git@") {
                return Err(instr_err(
                    &self.df.file,
                    ins.line,
                    "ADD of a git repository is not supported",
                ));
            }
            sources.push(Source::Path(s));
        }

        let (from_desc, entries) = match &c.from {
            None => {
                let tree = SourceTree {
                    root: &self.opts.context,
                    ignore: &self.ignore,
                };
                (
                    "context".to_owned(),
                    copy::plan(&tree, &sources, &dest, dest_is_dir, is_add)?,
                )
            }
            Some(from) => {
                let from = x(from)?;
                let src_state = match self.copy_source_stage(&from, self.df.stages.len()) {
                    Some(i) => done
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| BuildError::Internal(format!("stage {from} not built")))?,
                    None => self.image_state(&from)?,
                };
                let (src_mount, src_root) = self.view(&src_state, &work.0.join("src"))?;
                let empty = Ignore::default();
                let tree = SourceTree {
                    root: &src_root,
                    ignore: &empty,
                };
                let entries = copy::plan(&tree, &sources, &dest, dest_is_dir, false)?;
                // Files of a mount are read now (hash) and again when the layer is written:
                // keep the mount in the plan.
                return Ok((
                    format!(
                        "{} from={} {} -> {} {}",
                        if is_add { "ADD" } else { "COPY" },
                        src_state.key,
                        json!(c.sources),
                        dest,
                        copy::hash_plan(&entries, &attrs)?
                    ),
                    CopyPlan {
                        entries,
                        attrs,
                        _mount: src_mount,
                        _work: Some(work),
                    },
                ));
            }
        };
        let hash = copy::hash_plan(&entries, &attrs)?;
        Ok((
            format!(
                "{} from={from_desc} {} -> {dest} {hash}",
                if is_add { "ADD" } else { "COPY" },
                json!(c.sources)
            ),
            CopyPlan {
                entries,
                attrs,
                _mount: None,
                _work: Some(work),
            },
        ))
    }

    fn write_copy(
        &self,
        state: &State,
        entries: &[copy::Entry],
        attrs: &Attrs,
    ) -> Result<Layer, BuildError> {
        let work = self.work_dir()?;
        let (mount, cur) = self.view(state, &work.0)?;
        let layer = layer::write_layer(&self.store, &self.snapshots, |out| {
            copy::write_plan(out, entries, attrs, &cur)
        })?;
        drop(mount);
        Ok(layer)
    }

    /// `WORKDIR` creates its directory (with parents) when the state lacks it.
    fn ensure_dir(&self, state: &State, dir: &str) -> Result<Option<Layer>, BuildError> {
        let rel = crate::ignore::clean(dir);
        if rel.is_empty() {
            return Ok(None);
        }
        let work = self.work_dir()?;
        let (mount, cur) = self.view(state, &work.0)?;
        let rel = copy::resolve_in_root(&cur, &rel);
        if cur.join(&rel).is_dir() {
            return Ok(None);
        }
        let entries = vec![copy::Entry {
            dest: rel.clone(),
            item: copy::Item::Dir(self.empty.clone()),
        }];
        let attrs = Attrs {
            chmod: Some(0o755),
            ..Attrs::default()
        };
        let layer = layer::write_layer(&self.store, &self.snapshots, |out| {
            copy::write_plan(out, &entries, &attrs, &cur)
        })?;
        drop(mount);
        Ok(Some(layer))
    }
}

/// A `COPY`/`ADD` plan and what must stay alive until its layer is written.
#[derive(Default)]
struct CopyPlan {
    entries: Vec<copy::Entry>,
    attrs: Attrs,
    _mount: Option<Mount>,
    _work: Option<WorkDir>,
}

/// A step's scratch directory, removed on drop (after any mount in it is gone).
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Default for WorkDir {
    fn default() -> Self {
        WorkDir(PathBuf::new())
    }
}

fn healthcheck_json(h: &Health) -> Value {
    match h {
        Health::None => json!({"Test": ["NONE"]}),
        Health::Check {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match command {
                CommandForm::Exec(v) => {
                    let mut t = vec!["CMD".to_owned()];
                    t.extend(v.iter().cloned());
                    t
                }
                CommandForm::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
            };
            let mut o = Map::new();
            o.insert("Test".into(), json!(test));
            let dur =
                |s: &Option<String>| s.as_deref().and_then(dockerfile_duration).map(|d| json!(d));
            for (k, v) in [
                ("Interval", dur(interval)),
                ("Timeout", dur(timeout)),
                ("StartPeriod", dur(start_period)),
                ("StartInterval", dur(start_interval)),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            if let Some(r) = retries {
                o.insert("Retries".into(), json!(r));
            }
            Value::Object(o)
        }
    }
}

fn dockerfile_duration(s: &str) -> Option<i64> {
    crate::dockerfile::parse_duration(s)
}

/// `ADD <url>`: the whole body, or a clear error.
fn download(url: &str) -> Result<Vec<u8>, BuildError> {
    let fail = |reason: String| BuildError::Download {
        url: url.to_owned(),
        reason,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(describe(&e)))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| fail(describe(&e)))?;
        Ok(bytes.to_vec())
    })
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// Writes the image of `state` (plus `labels`): config, then manifest. Returns (id,
/// manifest digest).
fn write_image(
    store: &Store,
    state: &State,
    labels: &BTreeMap<String, String>,
) -> Result<(Digest, Digest), BuildError> {
    let mut config = state.config.clone();
    if !labels.is_empty() {
        if !config["Labels"].is_object() {
            config["Labels"] = json!({});
        }
        for (k, v) in labels {
            config["Labels"][k] = json!(v);
        }
    }
    let created = state
        .history
        .last()
        .and_then(|h| h["created"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(now_rfc3339);
    let image_config = json!({
        "architecture": state.architecture,
        "os": state.os,
        "created": created,
        "config": config,
        "rootfs": {
            "type": "layers",
            "diff_ids": state.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        },
        "history": state.history,
    });
    let config_bytes =
        serde_json::to_vec(&image_config).map_err(|e| BuildError::Internal(e.to_string()))?;
    let id = store.write_blob_bytes(&config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {
            "mediaType": media_types::OCI_CONFIG,
            "digest": id.to_string(),
            "size": config_bytes.len(),
        },
        "layers": state.layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.blob.to_string(),
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| BuildError::Internal(e.to_string()))?;
    let manifest_digest = store.write_blob_bytes(&bytes)?;
    Ok((id, manifest_digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_edits() {
        let mut c = json!({"Env": ["A=1", "PATH=/bin"]});
        set_env(&mut c, "A", "2");
        assert_eq!(env_get(&c, "A").as_deref(), Some("2"));
        assert_eq!(env_list(&c), ["PATH=/bin", "A=2"]);
        assert!(env_get(&c, "B").is_none());
    }

    #[test]
    fn healthcheck_config() {
        let h = Health::Check {
            command: CommandForm::Shell("true".into()),
            interval: Some("5s".into()),
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: Some(2),
        };
        assert_eq!(
            healthcheck_json(&h),
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000i64, "Retries": 2})
        );
        assert_eq!(healthcheck_json(&Health::None), json!({"Test": ["NONE"]}));
    }
}
