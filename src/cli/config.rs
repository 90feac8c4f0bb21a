//! `berth config`: load the project as Docker Compose would and print it in canonical
//! form (YAML by default, `--format json`), or one facet of it (`--services`, `--volumes`,
//! `--profiles`, `--images`, `--hash`, `--environment`), or nothing (`-q`, validate only).
//! Warnings go to stderr as `warning: …` lines and never fail the command. An error or
//! warning with a place in a file is followed by that line of the file and carets under
//! the place, as rustc prints them (coloured only when stderr is a terminal).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::Context;
use berth_spec::model::Service;
use berth_spec::{App, LoadOptions, Location, PathSeg, RawProject, Warning, load_document};
use clap::{Args, ValueEnum};
use serde_yaml::Value;
use sha2::{Digest, Sha256};

use super::ProjectFlags;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Print the service names, one per line
    #[arg(long = "services")]
    pub list_services: bool,
    /// Print the volume names, one per line
    #[arg(long = "volumes")]
    pub list_volumes: bool,
    /// Print the profile names, one per line
    #[arg(long = "profiles")]
    pub list_profiles: bool,
    /// Print the image names, one per line
    #[arg(long = "images")]
    pub list_images: bool,
    /// Print the configuration hash of these services ("svc1,svc2" or "*")
    #[arg(long, value_name = "SERVICES")]
    pub hash: Option<String>,
    /// Only validate the configuration, print nothing
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't interpolate environment variables
    #[arg(long)]
    pub no_interpolate: bool,
    /// Print the environment used for interpolation
    #[arg(long)]
    pub environment: bool,
    /// Write the output to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only these services (and what they depend on)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// Loads the project of the global flags as a merged document, printing its warnings to
/// stderr.
pub fn load_raw(
    flags: &ProjectFlags,
    services: &[String],
    interpolate: bool,
) -> anyhow::Result<RawProject> {
    let mut options = LoadOptions::from_process();
    options.files = flags.files.clone();
    options.project_name = flags.project_name.clone();
    options.project_directory = flags.project_directory.clone();
    options.env_files = flags.env_files.clone();
    options.profiles = flags.profiles.clone();
    options.services = services.to_vec();
    options.interpolate = interpolate;
    if flags.files.iter().any(|f| f.as_os_str() == "-") {
        // read here rather than by the loader, so an excerpt can quote it; once per
        // process, as stdin can be read only once
        if STDIN_TEXT.get().is_none() {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the Compose file from stdin")?;
            let _ = STDIN_TEXT.set(text);
        }
        options.stdin = STDIN_TEXT.get().cloned();
    }
    let raw = load_document(&options)?;
    for warning in &raw.warnings {
        print_warning(warning);
    }
    Ok(raw)
}

/// The Compose file read from stdin (`-f -`), kept for excerpts.
static STDIN_TEXT: OnceLock<String> = OnceLock::new();

fn print_warning(warning: &Warning) {
    eprintln!("warning: {warning}");
    if let Some(excerpt) = warning.located().and_then(excerpt_at) {
        eprint!("{excerpt}");
    }
}

/// The lines of the file at `location` with carets under it, or `None` when the file
/// cannot be read again (or has changed so that the line is gone).
fn excerpt_at(location: &Location) -> Option<String> {
    let text = if location.file == Path::new("-") {
        STDIN_TEXT.get()?.clone()
    } else {
        std::fs::read_to_string(&location.file).ok()?
    };
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    berth_spec::snippet::excerpt(location, &text, color)
}

/// The excerpt for an error of the loader that has a place in a file: what a command
/// prints after the error's one line.
pub fn excerpt_for(err: &anyhow::Error) -> Option<String> {
    let spec_error = err.downcast_ref::<berth_spec::Error>()?;
    excerpt_at(spec_error.location()?)
}

/// Types, normalizes and validates a loaded document (printing the model's warnings).
pub fn to_app(raw: &RawProject, document: Value) -> anyhow::Result<App> {
    let locate = |path: &[PathSeg]| raw.source_map.locate(path);
    let (app, warnings) = App::from_document(
        &raw.name,
        &raw.project_dir,
        &raw.environment,
        document,
        &locate,
    )?;
    for warning in &warnings {
        print_warning(warning);
    }
    Ok(app)
}

pub fn run(flags: &ProjectFlags, args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let raw = load_raw(flags, &args.services, !args.no_interpolate)?;
    let mut document = raw.document.clone();
    if !args.services.is_empty() {
        keep_selected(&mut document, &args.services)?;
    }
    let app = to_app(&raw, document)?;
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let text = render(&raw, &app, args)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Keeps only the selected services and what they depend on, as `config SERVICE…` does.
fn keep_selected(document: &mut Value, selected: &[String]) -> anyhow::Result<()> {
    let Some(Value::Mapping(services)) = document.get_mut("services") else {
        return Ok(());
    };
    let keep = berth_spec::profiles::with_dependencies(services, selected)?;
    services.retain(|name, _| name.as_str().is_some_and(|n| keep.contains(n)));
    Ok(())
}

fn lines(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().map(|l| l + "\n").collect()
}

fn render(raw: &RawProject, app: &App, args: &ConfigArgs) -> anyhow::Result<String> {
    if args.environment {
        let mut vars: Vec<(&String, &String)> = raw.environment.iter().collect();
        vars.sort();
        return Ok(lines(vars.into_iter().map(|(k, v)| format!("{k}={v}"))));
    }
    if args.list_services {
        return Ok(lines(app.services.keys().cloned()));
    }
    if args.list_volumes {
        return Ok(lines(app.volumes.keys().cloned()));
    }
    if args.list_profiles {
        return Ok(lines(raw.all_profiles.clone()));
    }
    if args.list_images {
        return Ok(lines(app.services.iter().map(
            |(name, service)| match &service.image {
                Some(image) => image.clone(),
                // Compose names a built image after the project and the service.
                None => format!("{}-{name}", app.name),
            },
        )));
    }
    if let Some(which) = &args.hash {
        let wanted: Vec<String> = if which.trim() == "*" {
            app.services.keys().cloned().collect()
        } else {
            which
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let mut out = Vec::new();
        for name in wanted {
            let service = app
                .services
                .get(&name)
                .with_context(|| format!("no such service: {name}"))?;
            out.push(format!("{name} {}", service_hash(service)?));
        }
        return Ok(lines(out));
    }
    let text = match args.format {
        Format::Yaml => app.to_yaml(),
        Format::Json => app.to_json() + "\n",
    };
    // As Compose prints it: every `$` of an interpolated model doubled, so that the output
    // is itself a Compose file that loads to the same values (a literal `$` is `$$` there).
    Ok(if args.no_interpolate {
        text
    } else {
        text.replace('$', "$$")
    })
}

/// The configuration hash of a service: SHA-256 of its canonical JSON, leaving out what
/// does not change the containers (the replica count), as Compose does.
fn service_hash(service: &Service) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(service)?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("scale");
        if let Some(deploy) = obj.get_mut("deploy").and_then(|d| d.as_object_mut()) {
            deploy.remove("replicas");
        }
    }
    let json = serde_json::to_vec(&value)?;
    Ok(hex::encode(Sha256::digest(&json)))
}
