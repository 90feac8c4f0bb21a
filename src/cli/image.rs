//! `berth image …` and its top-level aliases (`images`, `load`, `save`, `import`, `tag`,
//! `rmi`): flags, output and exit codes over `berth_image`. For now the CLI opens the store
//! at `<data-root>/image` directly; the store's own locks (a metadata lock around every
//! record update, leases against garbage collection) keep concurrent processes safe.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use berth_image::archive::{self, ImportOptions, SaveFormat};
use berth_image::{Digest, GcOptions, Reference, Snapshotter, Store};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::DaemonFlags;

/// Manage images.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load images from an OCI layout or `docker save` archive (tar, directory, or stdin)
    Load(LoadArgs),
    /// Save images to a tar archive (stdout by default)
    Save(SaveArgs),
    /// Create a one-layer image from a root filesystem tar (or directory)
    Import(ImportArgs),
    /// List images
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show detailed information on images as JSON
    Inspect(InspectArgs),
    /// Remove images
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove unused images and free their content
    Prune(PruneArgs),
    /// Build an image from a Dockerfile
    Build(super::build::ImageBuildArgs),
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this tar archive or OCI layout directory instead of stdin
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print only image ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Oci,
    Docker,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value = "docker")]
    pub format: FormatArg,
    /// Images to save (names or ids)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Root filesystem tar (plain, gzip or zstd), a directory, or `-` for stdin
    #[arg(value_name = "FILE|-")]
    pub source: String,
    /// Name for the new image
    #[arg(value_name = "REF")]
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction: CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME, STOPSIGNAL
    #[arg(short, long = "change", value_name = "CHANGE")]
    pub changes: Vec<String>,
    /// Commit message recorded in the image history
    #[arg(short, long)]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only show image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Show all images (accepted for compatibility; berth has no intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Output format: `table` or `json` (one object per line)
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove every name of an image given by id, even if used by a container snapshot
    /// (long form only: `-f` is the global Compose file flag)
    #[arg(long)]
    pub force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE")]
    pub target: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all images not used by a container, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt (berth never prompts; accepted for compatibility)
    #[arg(long)]
    pub force: bool,
}

pub fn run(daemon: &DaemonFlags, args: ImageArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(daemon)?;
    match args.command {
        ImageCommand::Load(a) => load(&store, &a),
        ImageCommand::Save(a) => save(&store, &a),
        ImageCommand::Import(a) => import(&store, &a),
        ImageCommand::Ls(a) => ls(&store, &a),
        ImageCommand::Inspect(a) => inspect(&store, &a),
        ImageCommand::Rm(a) => rm(&store, &a),
        ImageCommand::Tag(a) => tag(&store, &a),
        ImageCommand::Prune(a) => prune(&store, &a),
        ImageCommand::Build(a) => {
            super::build::image_build_cmd(&super::ProjectFlags::default(), daemon, &a)
        }
    }
}

/// Runs one image subcommand given through a top-level alias.
pub fn run_alias(daemon: &DaemonFlags, command: ImageCommand) -> anyhow::Result<ExitCode> {
    run(daemon, ImageArgs { command })
}

fn open_store(daemon: &DaemonFlags) -> anyhow::Result<Store> {
    let root = daemon.data_root.join("image");
    Store::open(&root).with_context(|| format!("opening the image store at {}", root.display()))
}

fn load(store: &Store, args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let loaded = match &args.input {
        Some(path) if path.is_dir() => archive::load_dir(store, path)?,
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            archive::load_tar(store, file)?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is a terminal: use -i FILE or a pipe");
            }
            archive::load_tar(store, io::stdin().lock())?
        }
    };
    let mut printed = BTreeSet::new();
    for image in loaded {
        match (&image.reference, args.quiet) {
            (Some(r), false) => println!("Loaded image: {}", r.familiar()),
            _ => {
                let id = store.image(&image.target)?.id().clone();
                if printed.insert(id.clone()) {
                    println!("Loaded image ID: {id}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn save(store: &Store, args: &SaveArgs) -> anyhow::Result<ExitCode> {
    let mut images: Vec<(Digest, Vec<Reference>)> = Vec::new();
    for query in &args.images {
        let target = store.lookup(query)?;
        // A name saves that name; an id saves the image without names, as Docker does.
        let names: Vec<Reference> = match Reference::parse(query) {
            Ok(r) if store.resolve(&r).is_ok() => vec![r],
            _ => Vec::new(),
        };
        match images.iter_mut().find(|(t, _)| t == &target) {
            Some((_, existing)) => existing.extend(names),
            None => images.push((target, names)),
        }
    }
    let format = match args.format {
        FormatArg::Oci => SaveFormat::Oci,
        FormatArg::Docker => SaveFormat::Docker,
    };
    match &args.output {
        Some(path) => {
            // Write next to the destination and rename, so a failed save leaves no half file.
            let tmp = path.with_extension("berth-partial");
            let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut out = BufWriter::new(file);
            let result = archive::save(store, &images, format, &mut out)
                .map_err(anyhow::Error::from)
                .and_then(|()| out.into_inner().map_err(|e| e.into_error().into()))
                .and_then(|f| f.sync_all().map_err(Into::into))
                .and_then(|()| std::fs::rename(&tmp, path).map_err(Into::into));
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            let mut out = BufWriter::new(io::stdout().lock());
            archive::save(store, &images, format, &mut out)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import(store: &Store, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let options = ImportOptions {
        reference: args
            .reference
            .as_deref()
            .map(Reference::parse)
            .transpose()?,
        changes: args.changes.clone(),
        message: args.message.clone(),
    };
    let imported = if args.source == "-" {
        if io::stdin().is_terminal() {
            bail!("import from stdin, but stdin is a terminal: pipe a tar in");
        }
        archive::import_tar(store, io::stdin().lock(), &options)?
    } else {
        let path = PathBuf::from(&args.source);
        if path.is_dir() {
            archive::import_dir(store, &path, &options)?
        } else {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            archive::import_tar(store, file, &options)?
        }
    };
    println!("{}", imported.id);
    Ok(ExitCode::SUCCESS)
}

/// One row of `ls`: a name (or none) and its image.
struct Row {
    repository: String,
    tag: String,
    digest: String,
    id: Digest,
    created: Option<String>,
    size: u64,
}

fn rows(store: &Store) -> anyhow::Result<Vec<Row>> {
    let mut out = Vec::new();
    for record in store.list_images()? {
        // One broken image (a missing platform, a damaged blob) must not hide the others.
        let image = match store.image(&record.target) {
            Ok(image) => image,
            Err(e) => {
                eprintln!("berth: warning: {}: {e}", record.target);
                continue;
            }
        };
        let (repository, tag) = match &record.reference {
            Some(r) => (r.familiar_name(), r.tag().unwrap_or("<none>").to_owned()),
            None => ("<none>".to_owned(), "<none>".to_owned()),
        };
        let digest = match &record.reference {
            Some(_) => record.target.to_string(),
            None => "<none>".to_owned(),
        };
        out.push(Row {
            repository,
            tag,
            digest,
            id: image.id().clone(),
            created: image.config.created().clone(),
            size: image.size(),
        });
    }
    Ok(out)
}

fn ls(store: &Store, args: &LsArgs) -> anyhow::Result<ExitCode> {
    let rows = rows(store)?;
    if args.quiet {
        let mut seen = BTreeSet::new();
        for row in &rows {
            if seen.insert(row.id.clone()) {
                println!("{}", row.id.short());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format.as_str() {
        "json" => {
            for row in &rows {
                println!(
                    "{}",
                    json!({
                        "Repository": row.repository,
                        "Tag": row.tag,
                        "Digest": row.digest,
                        "ID": row.id.short(),
                        "CreatedAt": row.created,
                        "CreatedSince": row.created.as_deref().map(since).unwrap_or_default(),
                        "Size": human_size(row.size),
                    })
                );
            }
        }
        "table" => {
            let mut table: Vec<Vec<String>> = Vec::new();
            let mut header = vec!["REPOSITORY", "TAG"];
            if args.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE"]);
            table.push(header.into_iter().map(str::to_owned).collect());
            for row in &rows {
                let mut line = vec![row.repository.clone(), row.tag.clone()];
                if args.digests {
                    line.push(row.digest.clone());
                }
                line.push(row.id.short().to_owned());
                line.push(
                    row.created
                        .as_deref()
                        .map(since)
                        .unwrap_or_else(|| "N/A".into()),
                );
                line.push(human_size(row.size));
                table.push(line);
            }
            print_table(&table);
        }
        other => bail!("unknown --format {other:?}: expected table or json"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(table: &[Vec<String>]) {
    let columns = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn inspect(store: &Store, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    let mut failed = false;
    for query in &args.images {
        match inspect_one(store, query) {
            Ok(value) => out.push(value),
            Err(e) => {
                eprintln!("berth: {}", super::one_line(&e));
                failed = true;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn inspect_one(store: &Store, query: &str) -> anyhow::Result<Value> {
    let target = store.lookup(query)?;
    let image = store.image(&target)?;
    let raw: Value = serde_json::from_slice(&store.read_blob(image.id())?)?;
    let names = store.names_of(&target)?;
    let repo_tags: Vec<String> = names
        .iter()
        .filter(|n| n.tag().is_some())
        .map(Reference::familiar)
        .collect();
    let repo_digests: BTreeSet<String> = names
        .iter()
        .map(|n| format!("{}@{}", n.familiar_name(), target))
        .collect();
    let layers: Vec<String> = image.diff_ids()?.iter().map(ToString::to_string).collect();
    Ok(json!({
        "Id": image.id().to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Created": raw.get("created").cloned().unwrap_or(Value::Null),
        "Author": raw.get("author").cloned().unwrap_or(Value::Null),
        "Architecture": raw.get("architecture").cloned().unwrap_or(Value::Null),
        "Variant": raw.get("variant").cloned().unwrap_or(Value::Null),
        "Os": raw.get("os").cloned().unwrap_or(Value::Null),
        "Config": raw.get("config").cloned().unwrap_or(Value::Null),
        "RootFS": {"Type": "layers", "Layers": layers},
        "Size": image.size(),
        "Descriptor": {
            "digest": target.to_string(),
            "manifest": image.manifest_digest.to_string(),
        },
    }))
}

fn rm(store: &Store, args: &RmArgs) -> anyhow::Result<ExitCode> {
    let snapshotter = Snapshotter::new(store)?;
    let mut failed = false;
    let mut removed_any = false;
    for query in &args.images {
        match rm_one(store, &snapshotter, query, args.force) {
            Ok(lines) => {
                removed_any = true;
                for line in lines {
                    println!("{line}");
                }
            }
            Err(e) => {
                eprintln!("berth: {}", super::one_line(&e));
                failed = true;
            }
        }
    }
    if removed_any {
        collect(store, false)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn rm_one(
    store: &Store,
    snapshotter: &Snapshotter,
    query: &str,
    force: bool,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    // A name that resolves exactly: remove just that name.
    if let Ok(reference) = Reference::parse(query) {
        if let Ok(target) = store.resolve(&reference) {
            let remaining = store
                .names_of(&target)?
                .into_iter()
                .filter(|n| n != &reference)
                .count();
            if remaining == 0 {
                ensure_unused(store, snapshotter, &target, force)?;
            }
            store.untag(&reference)?;
            lines.push(format!("Untagged: {}", reference.familiar()));
            if remaining == 0 {
                store.remove_image(&target)?;
                lines.push(format!("Deleted: {}", store.image(&target)?.id()));
            }
            return Ok(lines);
        }
    }
    // An id: the image with all its names.
    let target = store.lookup(query)?;
    let names = store.names_of(&target)?;
    if names.len() > 1 && !force {
        bail!(
            "unable to delete {query}: the image is referenced in multiple repositories ({}); use -f",
            names
                .iter()
                .map(Reference::familiar)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    ensure_unused(store, snapshotter, &target, force)?;
    let id = store.image(&target)?.id().clone();
    for name in store.remove_image(&target)? {
        lines.push(format!("Untagged: {}", name.familiar()));
    }
    lines.push(format!("Deleted: {id}"));
    Ok(lines)
}

fn ensure_unused(
    store: &Store,
    snapshotter: &Snapshotter,
    target: &Digest,
    force: bool,
) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let id = store.image(target)?.id().clone();
    if let Some(c) = snapshotter
        .containers()?
        .into_iter()
        .find(|c| &c.image == target)
    {
        bail!(
            "unable to delete {} (used by container {}): remove the container first or use -f",
            id.short(),
            c.container_id
        );
    }
    Ok(())
}

fn tag(store: &Store, args: &TagArgs) -> anyhow::Result<ExitCode> {
    let target = store.lookup(&args.source)?;
    let reference = Reference::parse(&args.target)?;
    if reference.digest().is_some() {
        bail!(
            "refusing to tag with a digest reference {}: give a name and tag",
            args.target
        );
    }
    store.put_image(&reference, &target)?;
    Ok(ExitCode::SUCCESS)
}

fn prune(store: &Store, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let snapshotter = Snapshotter::new(store)?;
    let in_use: BTreeSet<Digest> = snapshotter
        .containers()?
        .into_iter()
        .map(|c| c.image)
        .collect();
    // Image id → names removed; ids are read before the records go.
    let mut deleted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let id_of = |t: &Digest| {
        store
            .image(t)
            .map_or_else(|_| t.to_string(), |i| i.id().to_string())
    };
    let dangling: BTreeSet<Digest> = store
        .list_images()?
        .into_iter()
        .filter(|r| r.reference.is_none())
        .map(|r| r.target)
        .collect();
    for target in &dangling {
        deleted.entry(id_of(target)).or_default();
    }
    store.remove_dangling()?;
    if args.all {
        let targets: BTreeSet<Digest> =
            store.list_images()?.into_iter().map(|r| r.target).collect();
        for target in targets.into_iter().filter(|t| !in_use.contains(t)) {
            let id = id_of(&target);
            let names = store.remove_image(&target)?;
            deleted
                .entry(id)
                .or_default()
                .extend(names.iter().map(Reference::familiar));
        }
    }
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for (id, names) in &deleted {
            for name in names {
                println!("untagged: {name}");
            }
            println!("deleted: {id}");
        }
        println!();
    }
    let freed = collect(store, true)?;
    println!("Total reclaimed space: {}", human_size(freed));
    Ok(ExitCode::SUCCESS)
}

/// Frees unreferenced content. After `rm` a busy store only postpones that; `prune` asks
/// for it explicitly and reports a busy store as an error.
fn collect(store: &Store, must: bool) -> anyhow::Result<u64> {
    let options = GcOptions::default();
    if must {
        return Ok(store.gc(&options)?.bytes_freed);
    }
    Ok(store.try_gc(&options)?.map_or(0, |r| r.bytes_freed))
}

/// Docker-style decimal sizes: `4.26MB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + UNITS[unit]
    }
}

/// `3 days ago` from an RFC 3339 timestamp.
fn since(created: &str) -> String {
    let Some(then) = parse_rfc3339(created) else {
        return "N/A".into();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let secs = (now - then).max(0);
    let (n, unit) = match secs {
        s if s < 60 => return "Less than a minute ago".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 86_400 * 14 => (s / 86_400, "day"),
        s if s < 86_400 * 60 => (s / (86_400 * 7), "week"),
        s if s < 86_400 * 365 * 2 => (s / (86_400 * 30), "month"),
        s => (s / (86_400 * 365), "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    // Days from civil (inverse of the formatter in berth-image).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::super::Cli::command().debug_assert();
    }

    #[test]
    fn sizes_and_times_render_like_docker() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00.5Z"), Some(951_782_400));
        assert_eq!(
            parse_rfc3339("2000-02-29T01:00:00+01:00"),
            Some(951_782_400)
        );
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
