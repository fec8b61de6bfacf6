//! The credentials file indexed for lookups, re-read when the file changes so
//! `polymeter keys add|disable` takes effect without a restart.

use crate::credentials::{
    hash_weave_key, Credentials, KeyMeta, ALIBABA_METRICS_ACTION, ANY_ENTITY,
};
use crate::AuthError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// Who a verified request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    /// The key's public id (Weave key id or access key), for logs.
    pub key_id: String,
    /// Projects the key is limited to; empty = every project of the tenant.
    pub projects: Vec<String>,
    entities: Arc<EntityOwners>,
}

/// Which tenant owns which entity.
#[derive(Debug, Default, PartialEq, Eq)]
struct EntityOwners {
    named: HashMap<String, String>,
    any: Option<String>,
}

impl EntityOwners {
    fn owner(&self, entity: &str) -> Option<&str> {
        self.named
            .get(entity)
            .or(self.any.as_ref())
            .map(String::as_str)
    }
}

impl Principal {
    /// Whether this credential may read or write `project_id` (`entity/project`).
    pub fn may_access(&self, project_id: &str) -> bool {
        let Some((entity, _)) = project_id.split_once('/') else {
            return false;
        };
        self.entities.owner(entity) == Some(self.tenant.as_str())
            && (self.projects.is_empty() || self.projects.iter().any(|p| p == project_id))
    }

    /// The one project-access check of every route: `project_id` must be a
    /// well-formed `entity/project` this credential may reach. `field` names
    /// where the id came from, for the error message.
    pub fn authorize(&self, field: &str, project_id: &str) -> Result<(), AuthError> {
        polymeter_model::ProjectId::check(project_id)
            .map_err(|e| AuthError::InvalidProject(format!("{field}: {e}")))?;
        if self.may_access(project_id) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "{field}: this API key has no access to project {project_id:?}"
            )))
        }
    }
}

/// An Alibaba or Qianfan key: the secret signatures are checked with.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub secret: String,
    pub disabled: bool,
    /// Alibaba only: the actions the key may call.
    pub actions: Vec<String>,
    pub principal: Principal,
}

impl SigningKey {
    pub fn allows(&self, action: &str) -> bool {
        let service = action.split_once(':').map(|(s, _)| s).unwrap_or("");
        self.actions
            .iter()
            .any(|a| a == "*" || a == action || *a == format!("{service}:*"))
    }
}

struct WeaveEntry {
    hash: [u8; 32],
    disabled: bool,
    principal: Principal,
}

/// One loaded version of the credentials file.
#[derive(Default)]
pub struct Index {
    weave: HashMap<[u8; 32], WeaveEntry>,
    alibaba: HashMap<String, SigningKey>,
    qianfan: HashMap<String, SigningKey>,
}

impl Index {
    pub fn build(credentials: &Credentials) -> Self {
        let mut owners = EntityOwners::default();
        for t in &credentials.tenants {
            for e in &t.entities {
                if e == ANY_ENTITY {
                    owners.any = Some(t.name.clone());
                } else {
                    owners.named.insert(e.clone(), t.name.clone());
                }
            }
        }
        let owners = Arc::new(owners);
        let principal = |tenant: &str, id: &str, meta: &KeyMeta| Principal {
            tenant: tenant.to_owned(),
            key_id: id.to_owned(),
            projects: meta.projects.clone(),
            entities: owners.clone(),
        };
        let mut index = Index::default();
        for t in &credentials.tenants {
            for k in &t.weave_keys {
                let mut hash = [0u8; 32];
                if hex::decode_to_slice(&k.sha256, &mut hash).is_ok() {
                    index.weave.insert(
                        hash,
                        WeaveEntry {
                            hash,
                            disabled: k.meta.disabled,
                            principal: principal(&t.name, &k.id, &k.meta),
                        },
                    );
                }
            }
            for k in &t.alibaba_keys {
                index.alibaba.insert(
                    k.access_key_id.clone(),
                    SigningKey {
                        secret: k.access_key_secret.clone(),
                        disabled: k.meta.disabled,
                        actions: k.actions.clone(),
                        principal: principal(&t.name, &k.access_key_id, &k.meta),
                    },
                );
            }
            for k in &t.qianfan_keys {
                index.qianfan.insert(
                    k.access_key.clone(),
                    SigningKey {
                        secret: k.secret_key.clone(),
                        disabled: k.meta.disabled,
                        actions: vec![],
                        principal: principal(&t.name, &k.access_key, &k.meta),
                    },
                );
            }
        }
        index
    }

    /// The principal of a Weave API key.
    pub fn weave(&self, key: &str) -> Result<Principal, AuthError> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hash_weave_key(key), &mut hash).expect("sha256 hex");
        // The map finds the candidate by hash (which says nothing about the
        // key); the final comparison is constant-time all the same.
        match self.weave.get(&hash) {
            Some(e) if bool::from(e.hash.ct_eq(&hash)) => {
                if e.disabled {
                    Err(AuthError::DisabledKey(e.principal.key_id.clone()))
                } else {
                    Ok(e.principal.clone())
                }
            }
            _ => Err(AuthError::UnknownAccessKey),
        }
    }

    pub fn alibaba(&self, access_key_id: &str) -> Option<&SigningKey> {
        self.alibaba.get(access_key_id)
    }

    pub fn qianfan(&self, access_key: &str) -> Option<&SigningKey> {
        self.qianfan.get(access_key)
    }
}

/// The credentials file, kept current: each lookup first checks (one `stat`)
/// whether the file changed and reloads it if so. A file that stops parsing
/// keeps the last good version in force, logged loudly.
pub struct Keyring {
    path: Option<PathBuf>,
    state: Mutex<(Option<Stamp>, Arc<Index>)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok()?,
        len: m.len(),
    })
}

impl Keyring {
    /// Loads `path`; fails if it is missing or invalid.
    pub fn open(path: &Path) -> Result<Self, AuthError> {
        let before = stamp(path);
        let credentials = Credentials::load(path)?;
        Ok(Self {
            path: Some(path.to_owned()),
            state: Mutex::new((before, Arc::new(Index::build(&credentials)))),
        })
    }

    /// Like [`Keyring::open`], but a missing file is an empty keyring (every
    /// key refused) until the file appears — for services that start before
    /// whoever writes it.
    pub fn open_or_empty(path: &Path) -> Result<Self, AuthError> {
        if path.exists() {
            return Self::open(path);
        }
        tracing::warn!(path = %path.display(), "no credentials file yet; every key is refused until it appears");
        Ok(Self {
            path: Some(path.to_owned()),
            state: Mutex::new((None, Arc::new(Index::default()))),
        })
    }

    /// A fixed set of credentials, never reloaded; for tests and tools.
    pub fn fixed(credentials: &Credentials) -> Self {
        Self {
            path: None,
            state: Mutex::new((None, Arc::new(Index::build(credentials)))),
        }
    }

    /// The current index.
    pub fn current(&self) -> Arc<Index> {
        let mut state = self.state.lock().expect("keyring lock");
        if let Some(path) = &self.path {
            let now = stamp(path);
            if now.is_some() && now != state.0 {
                match Credentials::load(path) {
                    Ok(credentials) => {
                        tracing::info!(path = %path.display(), "credentials reloaded");
                        *state = (now, Arc::new(Index::build(&credentials)));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "credentials file changed but cannot be used; keeping the previous version");
                        state.0 = now;
                    }
                }
            }
        }
        state.1.clone()
    }
}

/// The action the Alibaba metrics route checks; re-exported for the gateway.
pub const METRICS_ACTION: &str = ALIBABA_METRICS_ACTION;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{KeyKind, KeyRequest, NewKey};

    fn two_tenants() -> (Credentials, String, String) {
        let mut c = Credentials::default();
        c.ensure_tenant("acme", &["acme".into()]);
        c.ensure_tenant("globex", &["globex".into()]);
        let add = |c: &mut Credentials, tenant: &str| match c
            .add_key(&KeyRequest {
                tenant: tenant.into(),
                kind: KeyKind::Weave,
                label: String::new(),
                projects: vec![],
                actions: vec![],
            })
            .unwrap()
        {
            NewKey::Weave { key, .. } => key,
            _ => unreachable!(),
        };
        let a = add(&mut c, "acme");
        let g = add(&mut c, "globex");
        (c, a, g)
    }

    #[test]
    fn a_weave_key_reaches_only_its_tenants_entities() {
        let (c, acme, _) = two_tenants();
        let index = Index::build(&c);
        let p = index.weave(&acme).unwrap();
        assert_eq!(p.tenant, "acme");
        assert!(p.may_access("acme/bot"));
        assert!(!p.may_access("globex/bot"));
        assert!(!p.may_access("nobody/bot"));
        assert!(!p.may_access("acme"));
        assert!(matches!(
            index.weave("pm-wrong"),
            Err(AuthError::UnknownAccessKey)
        ));
    }

    #[test]
    fn the_any_entity_tenant_gets_only_unclaimed_entities() {
        let (mut c, _, _) = two_tenants();
        c.ensure_tenant("dev", &[ANY_ENTITY.into()]);
        let key = match c
            .add_key(&KeyRequest {
                tenant: "dev".into(),
                kind: KeyKind::Weave,
                label: String::new(),
                projects: vec![],
                actions: vec![],
            })
            .unwrap()
        {
            NewKey::Weave { key, .. } => key,
            _ => unreachable!(),
        };
        let p = Index::build(&c).weave(&key).unwrap();
        assert!(p.may_access("anyone/bot"));
        assert!(!p.may_access("acme/bot"));
    }

    #[test]
    fn a_changed_file_is_picked_up_and_a_broken_one_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let (c, acme, _) = two_tenants();
        c.save(&path).unwrap();
        let ring = Keyring::open(&path).unwrap();
        assert!(ring.current().weave(&acme).is_ok());
        let mut disabled = c.clone();
        let id = disabled.tenants[0].weave_keys[0].id.clone();
        disabled.set_disabled(&id, true).unwrap();
        // Same size file, so make sure the modification time moves.
        std::thread::sleep(std::time::Duration::from_millis(20));
        disabled.save(&path).unwrap();
        assert!(matches!(
            ring.current().weave(&acme),
            Err(AuthError::DisabledKey(_))
        ));
        std::fs::write(&path, "not toml [").unwrap();
        assert!(matches!(
            ring.current().weave(&acme),
            Err(AuthError::DisabledKey(_))
        ));
    }

    #[test]
    fn actions_match_exactly_or_by_wildcard() {
        let key = |actions: &[&str]| SigningKey {
            secret: String::new(),
            disabled: false,
            actions: actions.iter().map(|s| s.to_string()).collect(),
            principal: Principal {
                tenant: "t".into(),
                key_id: "k".into(),
                projects: vec![],
                entities: Arc::default(),
            },
        };
        assert!(key(&[METRICS_ACTION]).allows(METRICS_ACTION));
        assert!(key(&["aicontent:*"]).allows(METRICS_ACTION));
        assert!(key(&["*"]).allows(METRICS_ACTION));
        assert!(!key(&["aicontent:Other"]).allows(METRICS_ACTION));
        assert!(!key(&[]).allows(METRICS_ACTION));
    }
}
