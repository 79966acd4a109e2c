//! `hds`: run everything locally, and client conveniences.
//!
//! - `hds up` runs the four services in one process on embedded defaults (SQLite files, a
//!   blob folder and the embedded bus under `--data-dir`), provisions the default workspace
//!   and prints each service's URL.
//! - `hds token --role "FHIR Data Contributor"` mints a bearer token signed with the local key
//!   that `hds up --auth` trusts.
//! - `hds workspace|fhir|dicom|iot create|list|delete` drive the management API of
//!   operations-svc, following each operation to its end (see `manage`); `hds medtech
//!   create|list|delete` are the IoT connector commands, `hds medtech destination` its FHIR
//!   destination.
//! - `hds medtech send` posts device messages to a MedTech service; `hds medtech debug` runs
//!   the mapping debugger locally.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod manage;
mod medtech;
mod token;
mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hds",
    version,
    about = "hds: Azure Health Data Services, self-hosted"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run all four services in one process on embedded defaults.
    Up(up::UpArgs),
    /// Mint a bearer token signed with the local key.
    Token(token::TokenArgs),
    /// Workspaces of the management API: create, list, delete.
    Workspace(manage::workspace::WorkspaceArgs),
    /// FHIR services of a workspace: create, list, delete.
    Fhir(manage::services::ServiceArgs),
    /// DICOM services of a workspace: create, list, delete.
    Dicom(manage::services::ServiceArgs),
    /// IoT connectors (MedTech services) of a workspace: create, list, delete.
    Iot(manage::services::ServiceArgs),
    /// MedTech services (IoT connectors): create, list, delete, their FHIR destination;
    /// send device messages, debug mappings.
    Medtech(medtech::MedtechArgs),
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Up(args) => up::run(args),
        Command::Token(args) => token::run(args),
        Command::Workspace(args) => manage::workspace::run(args),
        Command::Fhir(args) => manage::services::run(manage::services::ServiceType::Fhir, args),
        Command::Dicom(args) => manage::services::run(manage::services::ServiceType::Dicom, args),
        Command::Iot(args) => manage::services::run(manage::services::ServiceType::Iot, args),
        Command::Medtech(args) => medtech::run(args),
    }
}
