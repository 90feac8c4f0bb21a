//! Which project a verb acts on: `-p` when given, else the project the Compose files
//! describe (loaded with the loader's flags, as `berth config` loads it).

use std::path::PathBuf;

use berth_spec::App;

use super::super::ProjectFlags;
use super::super::config;

/// A loaded project, ready to deploy.
pub struct Loaded {
    pub app: App,
    pub working_dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Loads and validates the project (all services; selection is the daemon's job).
pub fn load(flags: &ProjectFlags) -> anyhow::Result<Loaded> {
    let raw = config::load_raw(flags, &[], true)?;
    let app = config::to_app(&raw, raw.document.clone())?;
    Ok(Loaded {
        app,
        working_dir: raw.project_dir.clone(),
        files: raw.files.clone(),
    })
}

/// The project name: `-p`/`COMPOSE_PROJECT_NAME`, else the loaded project's.
pub fn name(flags: &ProjectFlags) -> anyhow::Result<String> {
    if let Some(name) = &flags.project_name {
        return Ok(name.clone());
    }
    Ok(config::load_raw(flags, &[], true)?.name)
}

/// Whether the current directory holds a Compose file the loader would find.
pub fn file_here() -> bool {
    [
        "compose.yaml",
        "compose.yml",
        "docker-compose.yaml",
        "docker-compose.yml",
    ]
    .iter()
    .any(|f| std::path::Path::new(f).is_file())
}
