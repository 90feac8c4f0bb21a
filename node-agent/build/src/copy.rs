//! `COPY` and `ADD`: which files go where. Sources are resolved against a source tree (the
//! build context with its `.dockerignore`, or another stage's or image's mounted root),
//! with globs; the destination follows Docker's rules (a trailing `/`, several sources, or
//! an existing directory make it a directory; a directory source copies its content).
//! The plan is hashed for the cache (paths, types, modes, owners, link targets and file
//! contents — never mtimes, as BuildKit) and then written as one layer, parent directories
//! included with the metadata they already have in the image.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::ignore::{Ignore, clean, glob_match, has_wildcards};
use crate::layer::{TarOut, append_dir, header_from};
use crate::{BuildError, io_err};

/// Where the files of one `COPY`/`ADD` come from.
pub struct SourceTree<'a> {
    pub root: &'a Path,
    /// `.dockerignore` of the context; empty for stages and images.
    pub ignore: &'a Ignore,
}

/// What one entry of the plan writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Dir(PathBuf),
    File(PathBuf),
    Symlink(PathBuf),
    Bytes(Vec<u8>),
    /// A local tar archive (`ADD`), extracted at the destination.
    Archive(PathBuf),
}

/// One planned entry: its path in the image (relative, no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dest: String,
    pub item: Item,
}

/// A source named in the instruction.
pub enum Source {
    /// A path or glob in the source tree.
    Path(String),
    /// Heredoc or downloaded content, with the file name to use in a directory destination.
    Content { name: String, bytes: Vec<u8> },
}

/// Builds the plan. `dest` is absolute (already joined to WORKDIR); `dest_is_dir` tells
/// whether the destination exists as a directory in the current state.
pub fn plan(
    tree: &SourceTree<'_>,
    sources: &[Source],
    dest: &str,
    dest_is_dir: bool,
    extract_archives: bool,
) -> Result<Vec<Entry>, BuildError> {
    let dest_clean = clean(dest);
    let multiple = sources.len() > 1
        || sources
            .iter()
            .any(|s| matches!(s, Source::Path(p) if has_wildcards(p)));
    let into_dir = dest.ends_with('/') || dest_is_dir || dest_clean.is_empty();
    let mut entries = Vec::new();
    let mut matched_total = 0usize;
    for source in sources {
        match source {
            Source::Content { name, bytes } => {
                matched_total += 1;
                let target = if into_dir || multiple {
                    join(&dest_clean, name)
                } else {
                    dest_clean.clone()
                };
                entries.push(Entry {
                    dest: target,
                    item: Item::Bytes(bytes.clone()),
                });
            }
            Source::Path(pattern) => {
                let rel = clean(pattern);
                let matches: Vec<String> = if has_wildcards(&rel) {
                    let mut found = Vec::new();
                    walk(tree, "", &mut |p, _| {
                        if glob_match(&rel, p) {
                            found.push(p.to_owned());
                        }
                    })?;
                    found.sort();
                    found
                } else {
                    let full = tree.root.join(&rel);
                    if fs::symlink_metadata(&full).is_err() || tree.ignore.excludes(&rel) {
                        return Err(BuildError::SourceMissing {
                            source_path: pattern.clone(),
                        });
                    }
                    vec![rel]
                };
                if matches.is_empty() {
                    return Err(BuildError::SourceMissing {
                        source_path: pattern.clone(),
                    });
                }
                matched_total += matches.len();
                for m in matches {
                    let full = if m.is_empty() {
                        tree.root.to_path_buf()
                    } else {
                        tree.root.join(&m)
                    };
                    let meta = fs::symlink_metadata(&full).map_err(io_err("stat", &full))?;
                    if meta.is_dir() {
                        // The directory's content goes into the destination.
                        walk(tree, &m, &mut |p, meta| {
                            let sub = p.strip_prefix(m.as_str()).unwrap_or(p);
                            let sub = sub.trim_start_matches('/');
                            let target = join(&dest_clean, sub);
                            let path = tree.root.join(p);
                            let item = if meta.is_dir() {
                                Item::Dir(path)
                            } else if meta.file_type().is_symlink() {
                                Item::Symlink(path)
                            } else {
                                Item::File(path)
                            };
                            entries.push(Entry { dest: target, item });
                        })?;
                    } else {
                        let name = m.rsplit('/').next().unwrap_or(&m).to_owned();
                        if extract_archives && meta.is_file() && is_archive(&full) {
                            entries.push(Entry {
                                dest: dest_clean.clone(),
                                item: Item::Archive(full),
                            });
                            continue;
                        }
                        let target = if into_dir || multiple {
                            join(&dest_clean, &name)
                        } else {
                            dest_clean.clone()
                        };
                        let item = if meta.file_type().is_symlink() {
                            Item::Symlink(full)
                        } else {
                            Item::File(full)
                        };
                        entries.push(Entry { dest: target, item });
                    }
                }
            }
        }
    }
    if matched_total > 1 && !into_dir {
        return Err(BuildError::DestNotDir {
            dest: dest.to_owned(),
        });
    }
    Ok(entries)
}

fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (false, true) => dir.to_owned(),
        (false, false) => format!("{dir}/{name}"),
    }
}

/// Walks the tree below `start` (relative), depth first in name order, calling `f` with
/// each path not excluded by the ignore rules.
fn walk(
    tree: &SourceTree<'_>,
    start: &str,
    f: &mut dyn FnMut(&str, &fs::Metadata),
) -> Result<(), BuildError> {
    let dir = if start.is_empty() {
        tree.root.to_path_buf()
    } else {
        tree.root.join(start)
    };
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err("read directory", &dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let rel = join(start, &name);
        let path = tree.root.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
        let excluded = tree.ignore.excludes(&rel);
        if !excluded {
            f(&rel, &meta);
        }
        if meta.is_dir() && (!excluded || tree.ignore.may_include_under(&rel)) {
            walk(tree, &rel, f)?;
        }
    }
    Ok(())
}

/// A tar, gzip-compressed tar or zstd-compressed tar (what `ADD` extracts).
pub fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut file) = fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    if head[..n].starts_with(&[0x1f, 0x8b]) || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return true;
    }
    n >= 262 && &head[257..262] == b"ustar"
}

/// Owner and mode applied to every copied entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub chmod: Option<u32>,
}

/// The cache key part of a plan: every entry's destination, kind, mode, owner, link target
/// and content hash.
pub fn hash_plan(entries: &[Entry], attrs: &Attrs) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    h.update(format!("{}:{}:{:?}\n", attrs.uid, attrs.gid, attrs.chmod));
    for e in entries {
        h.update(e.dest.as_bytes());
        h.update([0]);
        match &e.item {
            Item::Dir(p) => {
                let m = fs::symlink_metadata(p).map_err(io_err("stat", p))?;
                h.update(format!("dir {:o}", m.mode() & 0o7777));
            }
            Item::Symlink(p) => {
                let t = fs::read_link(p).map_err(io_err("read link", p))?;
                h.update(format!("link {}", t.display()));
            }
            Item::File(p) | Item::Archive(p) => {
                let m = fs::symlink_metadata(p).map_err(io_err("stat", p))?;
                h.update(format!(
                    "{} {:o} ",
                    if matches!(e.item, Item::Archive(_)) {
                        "archive"
                    } else {
                        "file"
                    },
                    m.mode() & 0o7777
                ));
                let mut f = BufReader::new(fs::File::open(p).map_err(io_err("open", p))?);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f.read(&mut buf).map_err(io_err("read", p))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            Item::Bytes(b) => {
                h.update(b"bytes ");
                h.update(b);
            }
        }
        h.update([b'\n']);
    }
    Ok(hex::encode(h.finalize()))
}

/// Writes the plan as a layer. `current` is the mounted current state, used for the
/// metadata of parent directories that already exist.
pub fn write_plan(
    out: &mut TarOut<'_>,
    entries: &[Entry],
    attrs: &Attrs,
    current: &Path,
) -> io::Result<()> {
    let mut emitted: BTreeSet<String> = BTreeSet::new();
    for e in entries {
        // Parents first, with the metadata the image already has for them.
        let mut parents = Vec::new();
        let mut p = e.dest.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            parents.push(parent.to_owned());
            p = parent;
        }
        if matches!(e.item, Item::Archive(_)) && !e.dest.is_empty() {
            parents.insert(0, e.dest.clone());
        }
        for parent in parents.into_iter().rev() {
            if emitted.insert(parent.clone()) {
                append_dir(out, &parent, existing_dir_header(current, &parent))?;
            }
        }
        match &e.item {
            Item::Dir(p) => {
                let meta = fs::symlink_metadata(p)?;
                let mut h = header_from(&meta);
                apply(&mut h, attrs);
                if emitted.insert(e.dest.clone()) {
                    append_dir(out, &e.dest, h)?;
                }
            }
            Item::Symlink(p) => {
                let meta = fs::symlink_metadata(p)?;
                let mut h = header_from(&meta);
                h.set_uid(u64::from(attrs.uid));
                h.set_gid(u64::from(attrs.gid));
                h.set_entry_type(tar::EntryType::Symlink);
                out.append_link(&mut h, &e.dest, fs::read_link(p)?)?;
            }
            Item::File(p) => {
                let meta = fs::metadata(p)?;
                let mut h = header_from(&meta);
                apply(&mut h, attrs);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(meta.len());
                out.append_data(&mut h, &e.dest, fs::File::open(p)?)?;
            }
            Item::Bytes(b) => {
                let mut h = tar::Header::new_gnu();
                h.set_mode(0o644);
                apply(&mut h, attrs);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(b.len() as u64);
                out.append_data(&mut h, &e.dest, b.as_slice())?;
            }
            Item::Archive(p) => extract_into(out, p, &e.dest)?,
        }
    }
    Ok(())
}

fn apply(h: &mut tar::Header, attrs: &Attrs) {
    h.set_uid(u64::from(attrs.uid));
    h.set_gid(u64::from(attrs.gid));
    if let Some(mode) = attrs.chmod {
        h.set_mode(mode);
    }
}

fn existing_dir_header(current: &Path, rel: &str) -> tar::Header {
    match fs::symlink_metadata(current.join(rel)) {
        Ok(meta) if meta.is_dir() => header_from(&meta),
        _ => {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_mtime(0);
            h
        }
    }
}

/// Re-emits the members of a local archive under `dest`, keeping their metadata.
fn extract_into(out: &mut TarOut<'_>, archive: &Path, dest: &str) -> io::Result<()> {
    let file = BufReader::new(fs::File::open(archive)?);
    let mut head = [0u8; 4];
    let mut peek = BufReader::new(fs::File::open(archive)?);
    let n = peek.read(&mut head)?;
    let reader: Box<dyn Read> = if head[..n].starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(file)?)
    } else {
        Box::new(file)
    };
    let mut tar_in = tar::Archive::new(reader);
    for entry in tar_in.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let rel = clean(&name);
        if rel.is_empty() {
            continue;
        }
        let target = join(dest, &rel);
        let mut h = entry.header().clone();
        match h.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let link = if h.entry_type() == tar::EntryType::Link {
                    join(dest, &clean(&link))
                } else {
                    link
                };
                out.append_link(&mut h, &target, link)?;
            }
            tar::EntryType::Directory => append_dir(out, &target, h)?,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            _ => {
                out.append_data(&mut h, &target, &mut entry)?;
            }
        }
    }
    Ok(())
}

/// Resolves `rel` (relative to the image root) following symlinks *inside* `root`, as
/// the path would resolve in a container: absolute link targets start again at `root`,
/// `..` never leaves it. Components that do not exist are kept as written.
pub fn resolve_in_root(root: &Path, rel: &str) -> String {
    let mut todo: Vec<String> = clean(rel).split('/').rev().map(str::to_owned).collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(done.join("/")).join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && hops < 40 => {
                hops += 1;
                let Ok(target) = fs::read_link(&candidate) else {
                    done.push(part);
                    continue;
                };
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_owned));
            }
            _ => done.push(part),
        }
    }
    done.join("/")
}

/// Parses `--chmod=755`.
pub fn parse_chmod(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

/// Makes a directory's mode like the source's (used by tests to set up trees).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("src/sub")).unwrap();
        fs::write(r.join("src/a.c"), "a").unwrap();
        fs::write(r.join("src/b.c"), "b").unwrap();
        fs::write(r.join("src/sub/c.h"), "c").unwrap();
        fs::write(r.join("README"), "r").unwrap();
        fs::write(r.join("secret.key"), "k").unwrap();
        t
    }

    fn dests(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.dest.as_str()).collect()
    }

    #[test]
    fn destination_rules() {
        let t = tree();
        let ig = Ignore::parse("*.key\n");
        let tree = SourceTree {
            root: t.path(),
            ignore: &ig,
        };
        let p = |srcs: &[&str], dest: &str, is_dir: bool| {
            let s: Vec<Source> = srcs.iter().map(|s| Source::Path((*s).into())).collect();
            plan(&tree, &s, dest, is_dir, false)
        };
        assert_eq!(
            dests(&p(&["README"], "/app/README.txt", false).unwrap()),
            ["app/README.txt"]
        );
        assert_eq!(
            dests(&p(&["README"], "/app/", false).unwrap()),
            ["app/README"]
        );
        assert_eq!(
            dests(&p(&["README"], "/app", true).unwrap()),
            ["app/README"]
        );
        assert_eq!(
            dests(&p(&["src"], "/s", false).unwrap()),
            ["s/a.c", "s/b.c", "s/sub", "s/sub/c.h"]
        );
        assert_eq!(
            dests(&p(&["src/*.c"], "/o/", false).unwrap()),
            ["o/a.c", "o/b.c"]
        );
        assert!(matches!(
            p(&["src/*.c"], "/o", false),
            Err(BuildError::DestNotDir { .. })
        ));
        assert!(matches!(
            p(&["secret.key"], "/x", false),
            Err(BuildError::SourceMissing { .. })
        ));
        assert!(matches!(
            p(&["nothing*"], "/x/", false),
            Err(BuildError::SourceMissing { .. })
        ));
        assert_eq!(
            dests(&p(&["."], "/all/", false).unwrap()),
            [
                "all/README",
                "all/src",
                "all/src/a.c",
                "all/src/b.c",
                "all/src/sub",
                "all/src/sub/c.h"
            ],
            "ignored files stay out"
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", r.join("usr/escape")).unwrap();
        assert_eq!(resolve_in_root(r, "lib/x.so"), "usr/lib/x.so");
        assert_eq!(resolve_in_root(r, "/abs/lib"), "usr/lib");
        assert_eq!(resolve_in_root(r, "usr/escape/passwd"), "etc/passwd");
        assert_eq!(resolve_in_root(r, "new/dir"), "new/dir");
    }

    #[test]
    fn hash_follows_content_not_mtime() {
        let t = tree();
        let ig = Ignore::default();
        let tree = SourceTree {
            root: t.path(),
            ignore: &ig,
        };
        let entries = plan(&tree, &[Source::Path("src".into())], "/s", false, false).unwrap();
        let attrs = Attrs::default();
        let h1 = hash_plan(&entries, &attrs).unwrap();
        fs::write(t.path().join("src/a.c"), "a").unwrap();
        assert_eq!(h1, hash_plan(&entries, &attrs).unwrap());
        fs::write(t.path().join("src/a.c"), "changed").unwrap();
        assert_ne!(h1, hash_plan(&entries, &attrs).unwrap());
        let chowned = Attrs {
            uid: 1,
            ..Attrs::default()
        };
        assert_ne!(
            hash_plan(&entries, &attrs).unwrap(),
            hash_plan(&entries, &chowned).unwrap()
        );
        assert_eq!(parse_chmod("755"), Some(0o755));
        assert_eq!(parse_chmod("99"), None);
    }
}
