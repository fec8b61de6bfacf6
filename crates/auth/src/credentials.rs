//! The credentials file (TOML): tenants, the Weave entities they own, and
//! their keys. Weave API keys are stored only as SHA-256 hashes; the Alibaba
//! and Qianfan secrets are stored as they are, because verifying an HMAC
//! signature needs the secret itself (keep the file mode 0600).
//!
//! ```toml
//! [[tenant]]
//! name = "acme"
//! entities = ["acme"]          # project ids "acme/…" belong to this tenant
//!
//! [[tenant.weave_key]]
//! id = "wk-3f9a0c1d"
//! sha256 = "…"                 # of the key; the key itself is shown once
//!
//! [[tenant.alibaba_key]]
//! access_key_id = "LTAI…"
//! access_key_secret = "…"
//! actions = ["aicontent:ModelRouterQueryObservationMetrics"]
//!
//! [[tenant.qianfan_key]]
//! access_key = "…"
//! secret_key = "…"
//! projects = ["acme/support-bot"]   # optional: limit the key to these projects
//! ```

use crate::AuthError;
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// An entity name that makes a tenant own every entity no other tenant names;
/// the development tenant uses it.
pub const ANY_ENTITY: &str = "*";

/// The Alibaba action `GET /api/v1/modelRouter/open/observation/metrics` needs.
pub const ALIBABA_METRICS_ACTION: &str = "aicontent:ModelRouterQueryObservationMetrics";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<Tenant>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub name: String,
    /// Weave entities (the part of a project id before `/`) this tenant owns.
    #[serde(default)]
    pub entities: Vec<String>,
    #[serde(default, rename = "weave_key", skip_serializing_if = "Vec::is_empty")]
    pub weave_keys: Vec<WeaveKey>,
    #[serde(default, rename = "alibaba_key", skip_serializing_if = "Vec::is_empty")]
    pub alibaba_keys: Vec<AlibabaKey>,
    #[serde(default, rename = "qianfan_key", skip_serializing_if = "Vec::is_empty")]
    pub qianfan_keys: Vec<QianfanKey>,
}

/// What every kind of key carries besides its secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct KeyMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created: String,
    /// Limits the key to these projects of its tenant; empty = all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WeaveKey {
    /// Public handle (for `keys list` and `keys disable`); not derived from the key.
    pub id: String,
    /// Hex SHA-256 of the key. Keys are 160 random bits, so a plain hash is
    /// as strong as a slow one here.
    pub sha256: String,
    #[serde(flatten)]
    pub meta: KeyMeta,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlibabaKey {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// RAM-style actions: `aicontent:ModelRouterQueryObservationMetrics`,
    /// `aicontent:*` or `*`.
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(flatten)]
    pub meta: KeyMeta,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QianfanKey {
    pub access_key: String,
    pub secret_key: String,
    #[serde(flatten)]
    pub meta: KeyMeta,
}

/// The three kinds of key, one per dialect family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Weave,
    Alibaba,
    Qianfan,
}

/// A key just made: the only moment its secret is known in full.
#[derive(Debug, Clone, PartialEq)]
pub enum NewKey {
    Weave {
        id: String,
        key: String,
    },
    Alibaba {
        access_key_id: String,
        access_key_secret: String,
    },
    Qianfan {
        access_key: String,
        secret_key: String,
    },
}

impl std::fmt::Display for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NewKey::Weave { id, key } => write!(
                f,
                "weave key {id}: {key}\n  use: WANDB_API_KEY={key}  (HTTP: Authorization: Basic base64(\"api:{key}\"))"
            ),
            NewKey::Alibaba { access_key_id, access_key_secret } => write!(
                f,
                "alibaba access key: {access_key_id}\n  secret: {access_key_secret}"
            ),
            NewKey::Qianfan { access_key, secret_key } => write!(
                f,
                "qianfan access key: {access_key}\n  secret: {secret_key}"
            ),
        }
    }
}

/// What `keys add` is asked to make.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub tenant: String,
    pub kind: KeyKind,
    pub label: String,
    pub projects: Vec<String>,
    /// Alibaba only; empty = the metrics action.
    pub actions: Vec<String>,
}

/// One line of `keys list`: never a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyListing {
    pub tenant: String,
    pub kind: KeyKind,
    pub id: String,
    pub meta: KeyMeta,
}

pub fn hash_weave_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Credentials {
    /// Reads and checks a credentials file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text).map_err(|message| AuthError::File {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let credentials: Credentials = toml::from_str(text).map_err(|e| e.to_string())?;
        credentials.check()?;
        Ok(credentials)
    }

    /// The invariants a loaded file must hold: unique tenant names, each
    /// entity owned once, each key id or access key used once.
    pub fn check(&self) -> Result<(), String> {
        use std::collections::HashMap;
        let mut tenants = std::collections::HashSet::new();
        let mut entities: HashMap<&str, &str> = HashMap::new();
        let mut ids: HashMap<&str, &str> = HashMap::new();
        for t in &self.tenants {
            if t.name.is_empty() {
                return Err("a tenant has an empty name".into());
            }
            if !tenants.insert(t.name.as_str()) {
                return Err(format!("tenant {:?} appears twice", t.name));
            }
            for e in &t.entities {
                if e.is_empty() || (e.contains('/')) {
                    return Err(format!("tenant {:?}: bad entity {e:?}", t.name));
                }
                if let Some(other) = entities.insert(e, &t.name) {
                    return Err(format!(
                        "entity {e:?} is owned by both {other:?} and {:?}",
                        t.name
                    ));
                }
            }
            let keys = t
                .weave_keys
                .iter()
                .map(|k| (k.id.as_str(), &k.meta))
                .chain(
                    t.alibaba_keys
                        .iter()
                        .map(|k| (k.access_key_id.as_str(), &k.meta)),
                )
                .chain(
                    t.qianfan_keys
                        .iter()
                        .map(|k| (k.access_key.as_str(), &k.meta)),
                );
            for (id, meta) in keys {
                if id.is_empty() {
                    return Err(format!("tenant {:?}: a key has an empty id", t.name));
                }
                if let Some(other) = ids.insert(id, &t.name) {
                    return Err(format!(
                        "key {id:?} appears twice (tenants {other:?} and {:?})",
                        t.name
                    ));
                }
                for p in &meta.projects {
                    let entity = p.split_once('/').map(|(e, _)| e).unwrap_or("");
                    let owned = t.entities.iter().any(|e| e == entity || e == ANY_ENTITY);
                    if polymeter_model::ProjectId::check(p).is_err() || !owned {
                        return Err(format!(
                            "key {id:?}: project {p:?} is not an \"entity/project\" of tenant {:?}",
                            t.name
                        ));
                    }
                }
            }
            for k in &t.weave_keys {
                if k.sha256.len() != 64 || hex::decode(&k.sha256).is_err() {
                    return Err(format!(
                        "weave key {:?}: sha256 must be 64 hex digits",
                        k.id
                    ));
                }
            }
        }
        if self
            .tenants
            .iter()
            .filter(|t| t.entities.iter().any(|e| e == ANY_ENTITY))
            .count()
            > 1
        {
            return Err(format!("only one tenant may own entity {ANY_ENTITY:?}"));
        }
        Ok(())
    }

    /// Writes the file atomically (a reader never sees half of it), readable
    /// by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let fail = |e: &dyn std::fmt::Display| AuthError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        self.check().map_err(|e| fail(&e))?;
        let body = toml::to_string_pretty(self).map_err(|e| fail(&e))?;
        let text = format!(
            "# Polymeter credentials: tenants, the Weave entities they own, and their keys.\n\
             # Managed with `polymeter keys`; the gateway re-reads it when it changes.\n\n{body}"
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let tmp = path.with_extension("toml.tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp).map_err(|e| fail(&e))?;
            file.write_all(text.as_bytes()).map_err(|e| fail(&e))?;
            file.sync_all().map_err(|e| fail(&e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| fail(&e))?;
        Ok(())
    }

    pub fn tenant_mut(&mut self, name: &str) -> Option<&mut Tenant> {
        self.tenants.iter_mut().find(|t| t.name == name)
    }

    /// The tenant named `name`, created (owning `entities`) if missing; given
    /// entities are added to an existing tenant.
    pub fn ensure_tenant(&mut self, name: &str, entities: &[String]) -> &mut Tenant {
        if self.tenant_mut(name).is_none() {
            self.tenants.push(Tenant {
                name: name.to_owned(),
                entities: vec![],
                weave_keys: vec![],
                alibaba_keys: vec![],
                qianfan_keys: vec![],
            });
        }
        let tenant = self.tenant_mut(name).expect("just ensured");
        for e in entities {
            if !tenant.entities.contains(e) {
                tenant.entities.push(e.clone());
            }
        }
        tenant
    }

    /// Makes a key for an existing tenant and returns its secret.
    pub fn add_key(&mut self, request: &KeyRequest) -> Result<NewKey, AuthError> {
        let tenant = self
            .tenant_mut(&request.tenant)
            .ok_or_else(|| AuthError::UnknownTenant(request.tenant.clone()))?;
        let meta = KeyMeta {
            label: request.label.clone(),
            disabled: false,
            created: now_text(),
            projects: request.projects.clone(),
        };
        let new = match request.kind {
            KeyKind::Weave => {
                // 40 characters after the dash: the shape W&B clients accept.
                let key = format!("pm-{}", random_hex(20));
                let id = format!("wk-{}", random_hex(4));
                tenant.weave_keys.push(WeaveKey {
                    id: id.clone(),
                    sha256: hash_weave_key(&key),
                    meta,
                });
                NewKey::Weave { id, key }
            }
            KeyKind::Alibaba => {
                let mut rng = rand::rng();
                let access_key_id = format!("LTAI{}", Alphanumeric.sample_string(&mut rng, 20));
                let access_key_secret = Alphanumeric.sample_string(&mut rng, 30);
                let actions = if request.actions.is_empty() {
                    vec![ALIBABA_METRICS_ACTION.to_owned()]
                } else {
                    request.actions.clone()
                };
                tenant.alibaba_keys.push(AlibabaKey {
                    access_key_id: access_key_id.clone(),
                    access_key_secret: access_key_secret.clone(),
                    actions,
                    meta,
                });
                NewKey::Alibaba {
                    access_key_id,
                    access_key_secret,
                }
            }
            KeyKind::Qianfan => {
                let (access_key, secret_key) = (random_hex(16), random_hex(16));
                tenant.qianfan_keys.push(QianfanKey {
                    access_key: access_key.clone(),
                    secret_key: secret_key.clone(),
                    meta,
                });
                NewKey::Qianfan {
                    access_key,
                    secret_key,
                }
            }
        };
        self.check().map_err(AuthError::Invalid)?;
        Ok(new)
    }

    /// Every key, without secrets.
    pub fn list(&self) -> Vec<KeyListing> {
        let mut out = Vec::new();
        for t in &self.tenants {
            let listing = |kind, id: &str, meta: &KeyMeta| KeyListing {
                tenant: t.name.clone(),
                kind,
                id: id.to_owned(),
                meta: meta.clone(),
            };
            out.extend(
                t.weave_keys
                    .iter()
                    .map(|k| listing(KeyKind::Weave, &k.id, &k.meta)),
            );
            out.extend(
                t.alibaba_keys
                    .iter()
                    .map(|k| listing(KeyKind::Alibaba, &k.access_key_id, &k.meta)),
            );
            out.extend(
                t.qianfan_keys
                    .iter()
                    .map(|k| listing(KeyKind::Qianfan, &k.access_key, &k.meta)),
            );
        }
        out
    }

    /// Disables (or re-enables) the key whose id or access key is `id`.
    pub fn set_disabled(&mut self, id: &str, disabled: bool) -> Result<(), AuthError> {
        for t in &mut self.tenants {
            let metas = t
                .weave_keys
                .iter_mut()
                .map(|k| (k.id.as_str(), &mut k.meta))
                .chain(
                    t.alibaba_keys
                        .iter_mut()
                        .map(|k| (k.access_key_id.as_str(), &mut k.meta)),
                )
                .chain(
                    t.qianfan_keys
                        .iter_mut()
                        .map(|k| (k.access_key.as_str(), &mut k.meta)),
                );
            for (key_id, meta) in metas {
                if key_id == id {
                    meta.disabled = disabled;
                    return Ok(());
                }
            }
        }
        Err(AuthError::UnknownKey(id.to_owned()))
    }

    /// A development tenant owning every entity, with one key of each kind.
    pub fn development(tenant: &str) -> (Self, Vec<NewKey>) {
        let mut credentials = Credentials::default();
        credentials.ensure_tenant(tenant, &[ANY_ENTITY.to_owned()]);
        let keys = [KeyKind::Weave, KeyKind::Alibaba, KeyKind::Qianfan]
            .into_iter()
            .map(|kind| {
                credentials
                    .add_key(&KeyRequest {
                        tenant: tenant.to_owned(),
                        kind,
                        label: "development".into(),
                        projects: vec![],
                        actions: vec![],
                    })
                    .expect("a fresh development tenant takes any key")
            })
            .collect();
        (credentials, keys)
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::Weave => "weave",
            KeyKind::Alibaba => "alibaba",
            KeyKind::Qianfan => "qianfan",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_file_loads_back_and_keeps_no_weave_key_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let (credentials, keys) = Credentials::development("local");
        credentials.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let NewKey::Weave { key, .. } = &keys[0] else {
            panic!()
        };
        assert!(!text.contains(key.as_str()));
        assert_eq!(Credentials::load(&path).unwrap(), credentials);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "credentials must not be readable by others"
            );
        }
    }

    #[test]
    fn an_entity_owned_twice_is_refused() {
        let text = r#"
            [[tenant]]
            name = "a"
            entities = ["acme"]
            [[tenant]]
            name = "b"
            entities = ["acme"]
        "#;
        let err = Credentials::parse(text).unwrap_err();
        assert!(err.contains("\"acme\" is owned by both"), "{err}");
    }

    #[test]
    fn a_key_limited_to_another_tenants_project_is_refused() {
        let mut c = Credentials::default();
        c.ensure_tenant("a", &["acme".into()]);
        let err = c
            .add_key(&KeyRequest {
                tenant: "a".into(),
                kind: KeyKind::Qianfan,
                label: String::new(),
                projects: vec!["globex/bot".into()],
                actions: vec![],
            })
            .unwrap_err();
        assert!(err.to_string().contains("globex/bot"), "{err}");
    }

    #[test]
    fn disabling_finds_a_key_by_its_public_id() {
        let (mut c, keys) = Credentials::development("local");
        let NewKey::Alibaba { access_key_id, .. } = &keys[1] else {
            panic!()
        };
        c.set_disabled(access_key_id, true).unwrap();
        assert!(c.tenants[0].alibaba_keys[0].meta.disabled);
        assert!(matches!(
            c.set_disabled("nope", true),
            Err(AuthError::UnknownKey(_))
        ));
    }
}
