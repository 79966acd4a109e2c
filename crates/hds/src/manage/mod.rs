//! `hds workspace|fhir|dicom|iot ...`: the management API of operations-svc from the command
//! line, as the Azure CLI drives Azure's. Changes are long-running: the command follows the
//! operation (`Azure-AsyncOperation`) and shows its progress until it ends.

pub mod client;
pub mod services;
pub mod workspace;

/// Where the management API is and which subscription and resource group to use.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// Base URL of operations-svc.
    #[arg(
        long,
        env = "HDS_MANAGEMENT_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    #[arg(
        long,
        env = "HDS_SUBSCRIPTION",
        default_value = "00000000-0000-0000-0000-000000000000"
    )]
    pub subscription: String,
    #[arg(long, short = 'g', env = "HDS_RESOURCE_GROUP", default_value = "hds")]
    pub resource_group: String,
    /// Bearer token (see `hds token --role Owner`) when the API requires one.
    #[arg(long, env = "HDS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Runs a client command on a small runtime and maps its failure to an exit code.
pub fn run<F>(what: &str, f: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hds {what}: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hds {what}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
