//! Container ids and names: random 64-hex ids, generated `adjective_noun` names, and
//! resolving what the user typed (full id, unique id prefix, or name) to one record.

use std::io::Read;

use super::{ContainerError, Record};

const ADJECTIVES: [&str; 24] = [
    "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
    "merry", "nimble", "proud", "quiet", "rapid", "serene", "sharp", "steady", "swift", "tidy",
    "vivid", "wise", "witty", "zesty",
];
const NOUNS: [&str; 24] = [
    "anchor", "buoy", "cabin", "compass", "deck", "dock", "ferry", "galley", "harbor", "hull",
    "jetty", "keel", "lantern", "mast", "pier", "quay", "rudder", "sail", "schooner", "tide",
    "wharf", "yacht", "skiff", "beacon",
];

pub fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 32 random bytes from the kernel, hex-encoded; never all digits (so a short id is never
/// mistaken for a number).
pub fn new_id() -> std::io::Result<String> {
    loop {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let id = hex::encode(bytes);
        if !id[..12].bytes().all(|b| b.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

/// A generated name: `adjective_noun`, with a number when that is taken.
pub fn generate_name(id: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let b = hex::decode(&id[..8]).unwrap_or_else(|_| vec![0; 4]);
    let base = format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        NOUNS[b[1] as usize % NOUNS.len()]
    );
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}{n}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| id[..12].to_string())
}

/// Docker's order: an exact id, then an exact name, then a unique id prefix.
pub fn resolve(records: Vec<Record>, query: &str) -> Result<Record, ContainerError> {
    let q = query.trim_start_matches('/');
    if q.is_empty() {
        return Err(ContainerError::NotFound(query.into()));
    }
    if let Some(r) = records.iter().find(|r| r.id == q) {
        return Ok(r.clone());
    }
    if let Some(r) = records.iter().find(|r| r.name == q) {
        return Ok(r.clone());
    }
    let mut found = records.into_iter().filter(|r| r.id.starts_with(q));
    match (found.next(), found.next()) {
        (Some(r), None) => Ok(r),
        (Some(_), Some(_)) => Err(ContainerError::Ambiguous(query.into())),
        _ => Err(ContainerError::NotFound(query.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::RunOptions;
    use crate::container::record::StateRecord;

    fn rec(id: &str, name: &str) -> Record {
        Record {
            id: id.into(),
            name: name.into(),
            image: String::new(),
            image_digest: String::new(),
            image_id: String::new(),
            config: RunOptions::default(),
            args: vec![],
            stop_signal: None,
            created: String::new(),
            labels: Default::default(),
            endpoints: vec![],
            mounts: vec![],
            state: StateRecord::default(),
        }
    }

    #[test]
    fn ids_are_random_hex() {
        let a = new_id().unwrap();
        assert!(is_id(&a));
        assert_ne!(a, new_id().unwrap());
    }

    #[test]
    fn resolution_order() {
        let a = "ab".repeat(32);
        let b = format!("abc{}", "0".repeat(61));
        let rs = vec![rec(&a, "web"), rec(&b, "ab")];
        assert_eq!(resolve(rs.clone(), &a).unwrap().name, "web");
        assert_eq!(resolve(rs.clone(), "web").unwrap().id, a);
        // a name wins over an id prefix
        assert_eq!(resolve(rs.clone(), "ab").unwrap().id, b);
        assert_eq!(resolve(rs.clone(), "abc").unwrap().id, b);
        assert!(matches!(
            resolve(rs.clone(), "a"),
            Err(ContainerError::Ambiguous(_))
        ));
        assert!(matches!(
            resolve(rs, "zz"),
            Err(ContainerError::NotFound(_))
        ));
    }

    #[test]
    fn generated_names_avoid_taken_ones() {
        let id = "0".repeat(64);
        let first = generate_name(&id, &|_| false);
        assert_eq!(first, "brave_anchor");
        let second = generate_name(&id, &|n| n == "brave_anchor");
        assert_eq!(second, "brave_anchor2");
    }
}
