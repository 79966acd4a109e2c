//! Names and tenancy, as Azure Health Data Services spells them.
//!
//! A workspace holds services; a data-plane instance is addressed as `{workspace}-{service}`
//! (Azure's host label). Workspace names may not contain a hyphen, so the first hyphen of an
//! instance name always splits it unambiguously.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("workspace name '{0}' is invalid: use 3 to 24 lowercase letters and digits, starting with a letter")]
    Workspace(String),
    #[error("service name '{0}' is invalid: use 3 to 24 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen")]
    Service(String),
    #[error("instance name '{0}' is invalid: expected '{{workspace}}-{{service}}'")]
    Instance(String),
}

/// A workspace name: 3-24 characters, lowercase letters and digits, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkspaceName(String);

/// A service name within a workspace: 3-24 characters, lowercase letters, digits and hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

/// A data-plane instance: one FHIR, DICOM or MedTech service of one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName {
    workspace: WorkspaceName,
    service: ServiceName,
}

fn valid_len(s: &str) -> bool {
    (3..=24).contains(&s.len())
}

impl FromStr for WorkspaceName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = valid_len(s)
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        ok.then(|| Self(s.to_owned()))
            .ok_or_else(|| NameError::Workspace(s.to_owned()))
    }
}

impl FromStr for ServiceName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = valid_len(s)
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        ok.then(|| Self(s.to_owned()))
            .ok_or_else(|| NameError::Service(s.to_owned()))
    }
}

impl FromStr for InstanceName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ws, svc) = s
            .split_once('-')
            .ok_or_else(|| NameError::Instance(s.to_owned()))?;
        Ok(Self {
            workspace: ws.parse()?,
            service: svc.parse()?,
        })
    }
}

impl InstanceName {
    pub fn new(workspace: WorkspaceName, service: ServiceName) -> Self {
        Self { workspace, service }
    }
    pub fn workspace(&self) -> &WorkspaceName {
        &self.workspace
    }
    pub fn service(&self) -> &ServiceName {
        &self.service
    }
}

macro_rules! string_newtype {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $t {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    };
}
string_newtype!(WorkspaceName);
string_newtype!(ServiceName);

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.workspace, self.service)
    }
}
impl TryFrom<String> for InstanceName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
impl From<InstanceName> for String {
    fn from(v: InstanceName) -> String {
        v.to_string()
    }
}

/// The kinds of data-plane service a workspace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Fhir,
    Dicom,
    Medtech,
}

impl ServiceKind {
    /// The ARM child resource type under a workspace.
    pub fn arm_type(self) -> &'static str {
        match self {
            ServiceKind::Fhir => "fhirservices",
            ServiceKind::Dicom => "dicomservices",
            ServiceKind::Medtech => "iotconnectors",
        }
    }
    /// The binary that serves this kind.
    pub fn service_binary(self) -> &'static str {
        match self {
            ServiceKind::Fhir => "fhir-svc",
            ServiceKind::Dicom => "dicom-svc",
            ServiceKind::Medtech => "medtech-svc",
        }
    }
    pub fn to_proto(self) -> crate::events::v1::ServiceKind {
        use crate::events::v1::ServiceKind as P;
        match self {
            ServiceKind::Fhir => P::Fhir,
            ServiceKind::Dicom => P::Dicom,
            ServiceKind::Medtech => P::Medtech,
        }
    }
    pub fn from_proto(p: crate::events::v1::ServiceKind) -> Option<Self> {
        use crate::events::v1::ServiceKind as P;
        match p {
            P::Fhir => Some(ServiceKind::Fhir),
            P::Dicom => Some(ServiceKind::Dicom),
            P::Medtech => Some(ServiceKind::Medtech),
            P::Unspecified => None,
        }
    }
}

/// The ARM id of a data-plane service resource.
pub fn service_resource_id(
    subscription: &str,
    resource_group: &str,
    instance: &InstanceName,
    kind: ServiceKind,
) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.HealthcareApis/workspaces/{}/{}/{}",
        instance.workspace(),
        kind.arm_type(),
        instance.service()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_splits_at_first_hyphen() {
        let i: InstanceName = "contoso-fhir-prod".parse().unwrap();
        assert_eq!(i.workspace().as_ref(), "contoso");
        assert_eq!(i.service().as_ref(), "fhir-prod");
        assert_eq!(i.to_string(), "contoso-fhir-prod");
    }

    #[test]
    fn rejects_bad_names() {
        assert!("ab".parse::<WorkspaceName>().is_err());
        assert!("Contoso".parse::<WorkspaceName>().is_err());
        assert!("1abc".parse::<WorkspaceName>().is_err());
        assert!("nohyphen".parse::<InstanceName>().is_err());
        assert!("ws1-bad-".parse::<InstanceName>().is_err());
        assert!("ws1-../etc".parse::<InstanceName>().is_err());
    }
}
