//! Secrets stored in the cluster on their own (`berth secret create`), for Compose files to
//! use as `external: true`. The store only ever holds a value sealed by the daemon (opaque
//! text); it decides names, uniqueness, and whether a secret is in use, and resolves an
//! app's external secrets to their sealed values when the app's files are set, so a task
//! opens them exactly like the app's own secrets.
//!
//! It must not see a value in clear nor decide how values are sealed (the daemon's
//! `cluster::files`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{Applied, ApplyError};
use super::state::{AppFiles, State};
use super::task::Timestamp;

/// One stored secret: its metadata and its sealed value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Chosen by the proposer (unique, never reused).
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub created_at: Timestamp,
    /// The value, sealed (opaque to the store).
    pub sealed: String,
}

/// An app's reference to a stored secret (`secrets: {KEY: {external: true, name: NAME}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalSecret {
    /// The stored secret's name.
    pub name: String,
    /// The app's services that use it, to name them when its removal is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

/// Docker's rule for secret names: 1 to 64 characters, letters, digits, `-`, `_` and `.`,
/// beginning and ending with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "secret name {name:?}: must have 1 to 64 characters"
        ));
    }
    let ok = name.starts_with(alnum)
        && name.ends_with(alnum)
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(format!(
            "secret name {name:?}: only letters, digits, '-', '_' and '.', beginning and ending with a letter or digit"
        ));
    }
    Ok(())
}

impl State {
    /// A stored secret by name or id.
    pub fn secret(&self, name_or_id: &str) -> Option<&StoredSecret> {
        self.secrets
            .get(name_or_id)
            .or_else(|| self.secrets.values().find(|s| s.id == name_or_id))
    }

    /// `<app>_<service>` (or the app alone when no service names it) of every deployed app
    /// that uses the stored secret `name`.
    pub fn secret_users(&self, name: &str) -> Vec<String> {
        let mut users = Vec::new();
        for (app, files) in &self.files {
            for external in files.external.values().filter(|e| e.name == name) {
                if external.services.is_empty() {
                    users.push(app.clone());
                }
                users.extend(external.services.iter().map(|s| format!("{app}_{s}")));
            }
        }
        users.sort();
        users.dedup();
        users
    }

    pub(super) fn create_secret(&mut self, secret: StoredSecret) -> Result<Applied, ApplyError> {
        check_name(&secret.name).map_err(|reason| ApplyError::InvalidSecret { reason })?;
        if self.secrets.contains_key(&secret.name) {
            return Err(ApplyError::SecretExists { name: secret.name });
        }
        self.secrets.insert(secret.name.clone(), secret);
        Ok(Applied::changed(1))
    }

    pub(super) fn remove_secret(&mut self, name: &str) -> Result<Applied, ApplyError> {
        let Some(name) = self.secret(name).map(|s| s.name.clone()) else {
            return Err(ApplyError::UnknownSecret {
                name: name.to_owned(),
            });
        };
        let users = self.secret_users(&name);
        if !users.is_empty() {
            return Err(ApplyError::SecretInUse {
                name,
                users: users.join(", "),
            });
        }
        self.secrets.remove(&name);
        Ok(Applied::changed(1))
    }

    /// Sets an app's files: its external secrets take the sealed values of the stored
    /// secrets they name (all or nothing). Empty files forget the app's.
    pub(super) fn set_app_files(
        &mut self,
        app: String,
        mut files: AppFiles,
    ) -> Result<Applied, ApplyError> {
        for (key, external) in &files.external {
            let Some(stored) = self.secrets.get(&external.name) else {
                return Err(ApplyError::MissingExternalSecret {
                    app,
                    key: key.clone(),
                    name: external.name.clone(),
                });
            };
            files.secrets.insert(key.clone(), stored.sealed.clone());
        }
        if files == AppFiles::default() {
            return Ok(Applied::changed(self.files.remove(&app).map_or(0, |_| 1)));
        }
        self.files.insert(app, files);
        Ok(Applied::changed(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Command;

    fn secret(name: &str, sealed: &str) -> StoredSecret {
        StoredSecret {
            id: format!("id-{name}"),
            name: name.into(),
            labels: BTreeMap::new(),
            created_at: 1,
            sealed: sealed.into(),
        }
    }

    fn uses(name: &str, services: &[&str]) -> AppFiles {
        let mut files = AppFiles::default();
        files.external.insert(
            "pw".into(),
            ExternalSecret {
                name: name.into(),
                services: services.iter().map(|s| s.to_string()).collect(),
            },
        );
        files
    }

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["a", "db_pw", "db.pw-2", "A1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a b", "a/b", ".a", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_secret_is_created_once_and_found_by_name_or_id() {
        let mut state = State::default();
        state
            .apply_command(Command::CreateSecret(secret("pw", "S1")))
            .unwrap();
        let again = state.apply_command(Command::CreateSecret(secret("pw", "S2")));
        assert!(matches!(again, Err(ApplyError::SecretExists { .. })));
        assert_eq!(state.secret("id-pw").unwrap().sealed, "S1");
        let bad = state.apply_command(Command::CreateSecret(secret("a b", "S")));
        assert!(matches!(bad, Err(ApplyError::InvalidSecret { .. })));
    }

    #[test]
    fn external_secrets_resolve_to_the_stored_value_and_block_removal_while_used() {
        let mut state = State::default();
        let missing = state.apply_command(Command::SetAppFiles {
            app: "shop".into(),
            files: uses("pw", &["web"]),
        });
        let err = missing.unwrap_err();
        assert!(matches!(err, ApplyError::MissingExternalSecret { .. }));
        assert!(err.to_string().contains("\"pw\""), "{err}");
        assert!(state.files.is_empty(), "a refused command changes nothing");

        state
            .apply_command(Command::CreateSecret(secret("pw", "SEALED")))
            .unwrap();
        state
            .apply_command(Command::SetAppFiles {
                app: "shop".into(),
                files: uses("pw", &["web", "worker"]),
            })
            .unwrap();
        assert_eq!(state.files["shop"].secrets["pw"], "SEALED");

        let refused = state
            .apply_command(Command::RemoveSecret { name: "pw".into() })
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "secret \"pw\" is in use by shop_web, shop_worker"
        );

        // A redeploy without it (empty files) or the app's removal frees it.
        state
            .apply_command(Command::SetAppFiles {
                app: "shop".into(),
                files: AppFiles::default(),
            })
            .unwrap();
        assert!(state.files.is_empty());
        state
            .apply_command(Command::RemoveSecret {
                name: "id-pw".into(),
            })
            .unwrap();
        assert!(state.secrets.is_empty());
        let gone = state.apply_command(Command::RemoveSecret { name: "pw".into() });
        assert!(matches!(gone, Err(ApplyError::UnknownSecret { .. })));
    }
}
