//! The resource types of `Microsoft.HealthcareApis` that hds serves, and their ARM ids.
//!
//! ARM ids are case-insensitive: every lookup goes through [`ResourcePath::key`] (the id
//! lowercased), while the id shown is the one the resource was created with.

use hds_core::names::{InstanceName, ServiceKind, ServiceName, WorkspaceName};

use crate::error::ArmError;

pub const PROVIDER: &str = "Microsoft.HealthcareApis";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Workspace,
    FhirService,
    DicomService,
    IotConnector,
    FhirDestination,
}

impl ResourceType {
    pub const ALL: [ResourceType; 5] = [
        ResourceType::Workspace,
        ResourceType::FhirService,
        ResourceType::DicomService,
        ResourceType::IotConnector,
        ResourceType::FhirDestination,
    ];

    /// The path segment naming the collection, and the `kind` column of `resources`.
    pub fn segment(self) -> &'static str {
        match self {
            ResourceType::Workspace => "workspaces",
            ResourceType::FhirService => "fhirservices",
            ResourceType::DicomService => "dicomservices",
            ResourceType::IotConnector => "iotconnectors",
            ResourceType::FhirDestination => "fhirdestinations",
        }
    }

    pub fn from_segment(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.segment() == s)
    }

    /// The ARM `type` of the resource.
    pub fn arm_type(self) -> &'static str {
        match self {
            ResourceType::Workspace => "Microsoft.HealthcareApis/workspaces",
            ResourceType::FhirService => "Microsoft.HealthcareApis/workspaces/fhirservices",
            ResourceType::DicomService => "Microsoft.HealthcareApis/workspaces/dicomservices",
            ResourceType::IotConnector => "Microsoft.HealthcareApis/workspaces/iotconnectors",
            ResourceType::FhirDestination => {
                "Microsoft.HealthcareApis/workspaces/iotconnectors/fhirdestinations"
            }
        }
    }

    /// The data-plane service that carries out this resource's changes. A FHIR destination is
    /// configuration of its IoT connector's MedTech instance.
    pub fn service_kind(self) -> Option<ServiceKind> {
        match self {
            ResourceType::Workspace => None,
            ResourceType::FhirService => Some(ServiceKind::Fhir),
            ResourceType::DicomService => Some(ServiceKind::Dicom),
            ResourceType::IotConnector | ResourceType::FhirDestination => {
                Some(ServiceKind::Medtech)
            }
        }
    }

    /// The resource type that must exist before this one can.
    pub fn parent(self) -> Option<ResourceType> {
        match self {
            ResourceType::Workspace => None,
            ResourceType::FhirService | ResourceType::DicomService | ResourceType::IotConnector => {
                Some(ResourceType::Workspace)
            }
            ResourceType::FhirDestination => Some(ResourceType::IotConnector),
        }
    }
}

/// Where a resource lives: subscription, resource group, workspace and, for nested
/// resources, the service (and destination) names — all validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub subscription: String,
    pub group: String,
    pub workspace: WorkspaceName,
    /// The service (FHIR, DICOM, IoT connector) under the workspace.
    pub service: Option<(ResourceType, ServiceName)>,
    /// A FHIR destination under the IoT connector.
    pub destination: Option<ServiceName>,
}

/// A resource group name as ARM accepts it: 1-90 of letters, digits, `-_.()`, not ending in
/// a period.
pub fn check_group(group: &str) -> Result<(), ArmError> {
    let ok = (1..=90).contains(&group.len())
        && !group.ends_with('.')
        && group
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.()".contains(c));
    ok.then_some(())
        .ok_or_else(|| ArmError::InvalidResourceGroup(group.to_owned()))
}

fn service_name(t: ResourceType, s: &str) -> Result<ServiceName, ArmError> {
    s.parse().map_err(|_| ArmError::InvalidResourceName {
        name: s.to_owned(),
        rtype: t,
    })
}

impl ResourcePath {
    /// Builds and validates the path of a resource of type `t` from its URL segments.
    pub fn parse(
        t: ResourceType,
        subscription: &str,
        group: &str,
        workspace: &str,
        service: Option<&str>,
        destination: Option<&str>,
    ) -> Result<Self, ArmError> {
        check_group(group)?;
        let workspace = workspace
            .parse()
            .map_err(|_| ArmError::InvalidResourceName {
                name: workspace.to_owned(),
                rtype: ResourceType::Workspace,
            })?;
        let service_type = match t {
            ResourceType::FhirDestination => Some(ResourceType::IotConnector),
            ResourceType::Workspace => None,
            other => Some(other),
        };
        let service = match (service_type, service) {
            (Some(st), Some(s)) => Some((st, service_name(st, s)?)),
            _ => None,
        };
        let destination = match (t, destination) {
            (ResourceType::FhirDestination, Some(d)) => Some(service_name(t, d)?),
            _ => None,
        };
        Ok(Self {
            subscription: subscription.to_owned(),
            group: group.to_owned(),
            workspace,
            service,
            destination,
        })
    }

    pub fn rtype(&self) -> ResourceType {
        match (&self.service, &self.destination) {
            (_, Some(_)) => ResourceType::FhirDestination,
            (Some((t, _)), None) => *t,
            (None, None) => ResourceType::Workspace,
        }
    }

    pub fn workspace_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{PROVIDER}/workspaces/{}",
            self.subscription, self.group, self.workspace
        )
    }

    /// The ARM id, as this request spells it.
    pub fn id(&self) -> String {
        let mut id = self.workspace_id();
        if let Some((t, name)) = &self.service {
            id.push_str(&format!("/{}/{name}", t.segment()));
        }
        if let Some(d) = &self.destination {
            id.push_str(&format!("/fhirdestinations/{d}"));
        }
        id
    }

    pub fn key(&self) -> String {
        self.id().to_ascii_lowercase()
    }

    pub fn name(&self) -> String {
        match (&self.service, &self.destination) {
            (_, Some(d)) => d.to_string(),
            (Some((_, s)), None) => s.to_string(),
            (None, None) => self.workspace.to_string(),
        }
    }

    /// The path of the resource this one is nested in.
    pub fn parent(&self) -> Option<ResourcePath> {
        let mut parent = self.clone();
        if parent.destination.take().is_some() {
            return Some(parent);
        }
        parent.service.take().map(|_| parent)
    }

    /// The data-plane instance that serves this resource (`{ws}-{service}`).
    pub fn instance(&self) -> Option<InstanceName> {
        self.service
            .as_ref()
            .map(|(_, s)| InstanceName::new(self.workspace.clone(), s.clone()))
    }
}

/// Lowercased id prefix of the collection of `t` resources under `parent` (or, for
/// workspaces, under a subscription or resource group): listing is a prefix scan.
pub fn collection_prefix(parent_id: &str, t: ResourceType) -> String {
    format!("{parent_id}/{}/", t.segment()).to_ascii_lowercase()
}

pub fn subscription_prefix(subscription: &str) -> String {
    format!("/subscriptions/{subscription}/").to_ascii_lowercase()
}

pub fn group_prefix(subscription: &str, group: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{group}/").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_nest_and_names_are_checked() {
        let p = ResourcePath::parse(
            ResourceType::FhirDestination,
            "sub",
            "RG.1(x)",
            "ws1",
            Some("conn"),
            Some("dest1"),
        )
        .unwrap();
        assert_eq!(p.rtype(), ResourceType::FhirDestination);
        assert_eq!(
            p.id(),
            "/subscriptions/sub/resourceGroups/RG.1(x)/providers/Microsoft.HealthcareApis/workspaces/ws1/iotconnectors/conn/fhirdestinations/dest1"
        );
        assert_eq!(p.name(), "dest1");
        assert_eq!(p.instance().unwrap().to_string(), "ws1-conn");
        let parent = p.parent().unwrap();
        assert_eq!(parent.rtype(), ResourceType::IotConnector);
        assert_eq!(parent.parent().unwrap().rtype(), ResourceType::Workspace);
        assert!(parent.parent().unwrap().parent().is_none());

        for (ws, svc) in [
            ("w", "fhir"),
            ("ws-1", "fhir"),
            ("ws1", "Fhir"),
            ("ws1", "x-"),
        ] {
            let e = ResourcePath::parse(ResourceType::FhirService, "s", "g", ws, Some(svc), None)
                .unwrap_err();
            assert!(
                matches!(e, ArmError::InvalidResourceName { .. }),
                "{ws}/{svc}"
            );
        }
        for group in ["", "a.", "a/b", &"g".repeat(91)] {
            assert!(check_group(group).is_err(), "{group}");
        }
    }
}
