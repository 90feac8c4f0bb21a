//! `berth down`: remove the app (tasks, containers, networks; named volumes with `-v`; the
//! images it used with `--rmi`), showing one progress line per removed resource.

use std::process::ExitCode;

use anyhow::Context as _;
use berth_api::v1;
use clap::Args;

use super::client::Session;
use super::progress::Display;
use super::{Context, project};

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also remove named volumes declared in the Compose file
    #[arg(short, long)]
    pub volumes: bool,
    /// Also remove images the services use: "local" (those without a custom tag) or "all"
    #[arg(long, value_parser = ["local", "all"])]
    pub rmi: Option<String>,
    /// Also remove containers of services no longer in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Seconds to wait for containers to stop before killing them
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    pub timeout: Option<u32>,
}

pub fn run(ctx: &Context, args: &DownArgs) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    // the images to remove are learnt before the containers that name them go
    let images = match &args.rmi {
        Some(which) => session
            .call(compose.images(v1::ImagesRequest {
                project: project.clone(),
                services: Vec::new(),
            }))?
            .images
            .into_iter()
            .map(|i| i.reference)
            .filter(|r| which == "all" || r.ends_with(":latest") || !r.contains(':'))
            .collect(),
        None => Vec::new(),
    };
    // the file's services: the daemon keeps the others (orphans) unless --remove-orphans;
    // without a readable file (`down -p NAME` elsewhere) everything goes
    let services: Vec<String> = if args.remove_orphans {
        Vec::new()
    } else {
        super::project::load(&ctx.project)
            .ok()
            .filter(|l| l.app.name == project)
            .map(|l| l.app.services.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut display = Display::new(ctx.progress, "Running");
    let removed = match session.rt.block_on(compose.remove(v1::RemoveRequest {
        project: project.clone(),
        remove_volumes: args.volumes,
        remove_orphans: args.remove_orphans,
        timeout_seconds: args.timeout,
        services,
    })) {
        Ok(answer) => answer.into_inner(),
        // nothing deployed under this name: nothing to remove, as in Compose
        Err(status) if status.code() == tonic::Code::NotFound => {
            eprintln!("warning: no resource found to remove for project {project:?}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(status) => {
            return Err(super::client::status_error(status))
                .with_context(|| format!("removing {project}"));
        }
    };
    for c in &removed.containers {
        display.set("Container", c, "Removed", true);
    }
    if !removed.orphan_containers.is_empty() {
        let mut names = removed.orphan_containers.clone();
        names.sort();
        eprintln!(
            "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or \
             renamed this service in your compose file, you can run this command with the \
             --remove-orphans flag to clean it up.",
            names.join(" ")
        );
    }
    for v in &removed.volumes {
        display.set("Volume", v, "Removed", true);
    }
    for n in &removed.networks {
        display.set("Network", n, "Removed", true);
    }
    let mut failed = false;
    let mut unique = images;
    unique.sort();
    unique.dedup();
    for image in unique {
        let status = std::process::Command::new(std::env::current_exe()?)
            .arg("--data-root")
            .arg(&ctx.conn.data_root)
            .args(["image", "rm", &image])
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("removing image {image}"))?;
        if status.success() {
            display.set("Image", &image, "Removed", true);
        } else {
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
