//! `medtech-svc`: the MedTech service as its own process (Kafka, PostgreSQL from configuration).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hds_core::ops::run_service(
        medtech_svc::NAME,
        "hds MedTech service (device messages to FHIR Observations)",
        medtech_svc::Settings::local_defaults(std::path::Path::new("./data")),
        medtech_svc::start,
    )
}
