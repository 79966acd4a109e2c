//! hds-bench: the load generators of `make bench-fhir`, `bench-dicom` and `bench-medtech`.

pub mod procfs;
