//! Identifier newtypes. A `ProjectId` is always `entity/project`: the entity is
//! what tenancy checks compare, so it is parsed once at the edge.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("project_id must look like \"entity/project\", got {0:?}")]
    BadProjectId(String),
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("project_id is longer than {0} bytes")]
    ProjectIdTooLong(usize),
}

/// The longest project id, in bytes.
pub const MAX_PROJECT_ID: usize = 512;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// The owner of data; comes from the credential, never from a request body.
    TenantId
);
string_id!(
    /// A Weave project, `entity/project`.
    ProjectId
);
string_id!(
    /// A call's id, unique within its project.
    CallId
);

impl TenantId {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if value.is_empty() {
            return Err(IdError::Empty { field: "tenant" });
        }
        Ok(Self(value))
    }
}

impl CallId {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if value.is_empty() {
            return Err(IdError::Empty { field: "id" });
        }
        Ok(Self(value))
    }
}

impl ProjectId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        Self::check(value).map(|()| Self(value.to_owned()))
    }

    /// [`ProjectId::parse`] without building the id.
    pub fn check(value: &str) -> Result<(), IdError> {
        if value.len() > MAX_PROJECT_ID {
            return Err(IdError::ProjectIdTooLong(MAX_PROJECT_ID));
        }
        match value.split_once('/') {
            Some((entity, project))
                if !entity.is_empty() && !project.is_empty() && !project.contains('/') =>
            {
                Ok(())
            }
            _ => Err(IdError::BadProjectId(value.to_owned())),
        }
    }

    /// The entity part, which tenancy checks compare against the credential.
    pub fn entity(&self) -> &str {
        self.0.split_once('/').map(|(e, _)| e).unwrap_or(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_need_entity_and_project() {
        assert_eq!(ProjectId::parse("acme/bot").unwrap().entity(), "acme");
        for bad in ["", "acme", "acme/", "/bot", "a/b/c"] {
            assert!(ProjectId::parse(bad).is_err(), "{bad}");
        }
    }
}
