//! The DICOM service's vocabulary: UIDs and data partition names that are valid by
//! construction, the three levels of the DICOM information model, and the API versions Azure
//! serves.

use std::fmt;

use crate::error::DicomError;

/// A DICOM unique identifier as Azure accepts it: 1 to 64 characters of digits and dots, ending
/// in a digit (PS3.5 9.1, with Azure's leniency for leading zeroes). Trailing spaces, the
/// padding some writers add, are not part of the UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

impl Uid {
    /// The UID in `raw`, if `raw` is one (trailing space and NUL padding ignored).
    pub fn parse(raw: &str) -> Option<Self> {
        let v = raw.trim_end_matches([' ', '\0']);
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && v.ends_with(|c: char| c.is_ascii_digit());
        ok.then(|| Uid(v.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uid_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uid);

        impl $name {
            /// From a path segment: an invalid UID there is the client's mistake (400).
            pub fn from_path(raw: &str) -> Result<Self, DicomError> {
                Uid::parse(raw)
                    .map($name)
                    .ok_or_else(|| DicomError::InvalidIdentifier(raw.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uid_type!(
    /// StudyInstanceUID (0020,000D).
    StudyUid
);
uid_type!(
    /// SeriesInstanceUID (0020,000E).
    SeriesUid
);
uid_type!(
    /// SOPInstanceUID (0008,0018).
    SopInstanceUid
);

/// One stored instance, by its three UIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceRef {
    pub study: StudyUid,
    pub series: SeriesUid,
    pub sop: SopInstanceUid,
}

/// The name of a data partition, as Azure validates it (`PartitionNameValidator`): 1 to 64
/// characters of ASCII letters, digits, `.`, `-` and `_`, so that DICOM UIDs, GUIDs and
/// readable names all fit. Neither `/` nor anything else that could splice two names together
/// can occur, which the storage key of a partition relies on (`partitions::DataPartition`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionName(String);

impl PartitionName {
    /// The partition that always exists: where an instance's data lives when partitions are
    /// off, and where data stored before they were turned on is found.
    pub const DEFAULT: &'static str = "Microsoft.Default";

    pub fn parse(raw: &str) -> Result<Self, DicomError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if ok {
            Ok(PartitionName(raw.to_owned()))
        } else {
            Err(DicomError::InvalidPartitionName)
        }
    }

    pub fn default_partition() -> Self {
        PartitionName(Self::DEFAULT.to_owned())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartitionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a WADO-RS or delete request addresses: a study, a series or one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Study(StudyUid),
    Series(StudyUid, SeriesUid),
    Instance(StudyUid, SeriesUid, SopInstanceUid),
}

impl Scope {
    pub fn study(&self) -> &StudyUid {
        match self {
            Scope::Study(s) | Scope::Series(s, _) | Scope::Instance(s, _, _) => s,
        }
    }
    pub fn series(&self) -> Option<&SeriesUid> {
        match self {
            Scope::Study(_) => None,
            Scope::Series(_, s) | Scope::Instance(_, s, _) => Some(s),
        }
    }
    pub fn sop(&self) -> Option<&SopInstanceUid> {
        match self {
            Scope::Instance(_, _, s) => Some(s),
            _ => None,
        }
    }
    /// Azure's not-found answer names the level asked for.
    pub fn not_found(&self) -> DicomError {
        DicomError::NotFound(
            match self {
                Scope::Study(_) => "The specified study cannot be found.",
                Scope::Series(..) => "The specified series cannot be found.",
                Scope::Instance(..) => "The specified instance cannot be found.",
            }
            .to_owned(),
        )
    }
}

/// The API versions of Azure's DICOM service (`/v1.0-prerelease`, `/v1`, `/v2`).
///
/// v1 rejects an instance whose searchable attributes fail validation; v2 stores it, drops the
/// invalid attributes from its metadata and reports them as warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiVersion {
    V1Prerelease,
    V1,
    V2,
}

impl ApiVersion {
    /// What Azure reports in `api-supported-versions`.
    pub const SUPPORTED: &'static str = "1.0-prerelease, 1, 2";

    /// From the path segment (`v1`, `v1.0`, `v2`, `v1.0-prerelease`).
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment.strip_prefix('v')? {
            "1.0-prerelease" => Some(ApiVersion::V1Prerelease),
            "1" | "1.0" => Some(ApiVersion::V1),
            "2" | "2.0" => Some(ApiVersion::V2),
            _ => None,
        }
    }

    /// v2 and later: lenient store validation and 202 for instances stored with warnings.
    pub fn is_lenient(self) -> bool {
        self >= ApiVersion::V2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_follow_azure_rules() {
        assert_eq!(
            Uid::parse("1.2.840.10008 ").unwrap().as_str(),
            "1.2.840.10008"
        );
        assert_eq!(Uid::parse("1.2.3\0").unwrap().as_str(), "1.2.3");
        for bad in ["", "abc.123", "11|", "1.2.", &"1".repeat(65), "1 .2"] {
            assert!(Uid::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn partition_names_follow_azure_rules() {
        for good in [
            "Microsoft.Default",
            "myPartition-1",
            "a_b",
            "2.25.1",
            &"x".repeat(64),
        ] {
            assert_eq!(PartitionName::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", " ", "a b", "a/b", "caf\u{e9}", "a%2Fb", &"x".repeat(65)] {
            assert!(PartitionName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(PartitionName::default_partition().is_default());
    }

    #[test]
    fn versions_parse_as_azure_routes_them() {
        assert_eq!(ApiVersion::from_segment("v1"), Some(ApiVersion::V1));
        assert_eq!(ApiVersion::from_segment("v2.0"), Some(ApiVersion::V2));
        assert_eq!(
            ApiVersion::from_segment("v1.0-prerelease"),
            Some(ApiVersion::V1Prerelease)
        );
        assert_eq!(ApiVersion::from_segment("v3"), None);
        assert!(!ApiVersion::V1.is_lenient() && ApiVersion::V2.is_lenient());
    }
}
