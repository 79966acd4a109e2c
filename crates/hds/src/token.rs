//! `hds token`: a JWT for local use and tests, signed with `{key-dir}/signing-key.pem`
//! (created on first use), with Azure role names in the `roles` claim.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hds_core::auth::{LocalKey, KNOWN_ROLES};

#[derive(clap::Args)]
pub struct TokenArgs {
    /// An Azure role name, e.g. "FHIR Data Contributor" (repeatable).
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// The audience (`aud`) the services expect.
    #[arg(long, default_value = crate::up::LOCAL_AUDIENCE)]
    audience: String,
    /// The subject (`sub`).
    #[arg(long, default_value = "local-user")]
    subject: String,
    /// Lifetime in minutes.
    #[arg(long, default_value_t = 60)]
    ttl_minutes: u64,
    /// Where the local signing key lives (`hds up --auth` uses `{data-dir}/auth`).
    #[arg(long, default_value = "./data/auth")]
    key_dir: PathBuf,
}

pub fn run(args: TokenArgs) -> ExitCode {
    if let Some(unknown) = args
        .roles
        .iter()
        .find(|r| !KNOWN_ROLES.contains(&r.as_str()))
    {
        eprintln!(
            "hds token: unknown role '{unknown}'; known roles: {}",
            KNOWN_ROLES.join(", ")
        );
        return ExitCode::from(2);
    }
    let token = LocalKey::load_or_create(&args.key_dir).and_then(|key| {
        key.mint(
            &args.subject,
            &args.audience,
            &args.roles,
            Duration::from_secs(args.ttl_minutes * 60),
        )
    });
    match token {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hds token: {e}");
            ExitCode::FAILURE
        }
    }
}
