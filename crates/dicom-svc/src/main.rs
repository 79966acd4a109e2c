//! `dicom-svc`: the DICOM service as its own process (Kafka, PostgreSQL, S3 from configuration).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hds_core::ops::run_service(
        dicom_svc::NAME,
        "hds DICOM service (DICOMweb)",
        dicom_svc::Settings::local_defaults(std::path::Path::new("./data")),
        dicom_svc::start,
    )
}
