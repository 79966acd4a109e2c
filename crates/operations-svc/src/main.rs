//! `operations-svc`: the control plane as its own process (Kafka, PostgreSQL from configuration).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Alone, the control plane creates nothing until told to (a `[bootstrap]` section or
    // HDS_BOOTSTRAP__WORKSPACE); `hds up` bootstraps the default workspace.
    let mut defaults = operations_svc::Settings::local_defaults(std::path::Path::new("./data"));
    defaults.bootstrap = None;
    hds_core::ops::run_service(
        operations_svc::NAME,
        "hds control plane (Microsoft.HealthcareApis management API, operation results)",
        defaults,
        operations_svc::start,
    )
}
