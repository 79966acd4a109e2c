//! `fhir-svc`: the FHIR service as its own process (Kafka, PostgreSQL from configuration).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hds_core::ops::run_service(
        fhir_svc::NAME,
        "hds FHIR service (FHIR R4 REST API)",
        fhir_svc::Settings::local_defaults(std::path::Path::new("./data")),
        fhir_svc::start,
    )
}
