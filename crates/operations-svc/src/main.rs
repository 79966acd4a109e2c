//! `operations-svc`: the control plane as its own process (Kafka, PostgreSQL from configuration).

fn main() -> std::process::ExitCode {
    hds_core::ops::run_service(
        operations_svc::NAME,
        "hds control plane (Microsoft.HealthcareApis management API, operation results)",
        operations_svc::Settings::local_defaults(std::path::Path::new("./data")),
        operations_svc::start,
    )
}
