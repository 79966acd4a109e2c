//! `hds`: run everything locally, and client conveniences.
//!
//! - `hds up` runs the four services in one process on embedded defaults (SQLite files, a
//!   blob folder and the embedded bus under `--data-dir`), provisions the default workspace
//!   and prints each service's URL.
//! - `hds token --role "FHIR Data Contributor"` mints a bearer token signed with the local key
//!   that `hds up --auth` trusts.
//! - `hds medtech send` posts device messages to a MedTech service; `hds medtech debug` runs
//!   the mapping debugger locally.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// MedTech: send device messages, debug mappings.
    Medtech(medtech::MedtechArgs),
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Up(args) => up::run(args),
        Command::Token(args) => token::run(args),
        Command::Medtech(args) => medtech::run(args),
    }
}
