//! `hds fhir|dicom|iot create|list|delete`: the services of a workspace. `hds medtech
//! create|list|delete` are the IoT connector commands under MedTech's name, and `hds medtech
//! destination create|delete` manage a connector's FHIR destination.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{print_list, Client};
use super::Target;

/// Which collection of a workspace a command acts on.
#[derive(Clone, Copy)]
pub enum ServiceType {
    Fhir,
    Dicom,
    Iot,
}

impl ServiceType {
    fn segment(self) -> &'static str {
        match self {
            ServiceType::Fhir => "fhirservices",
            ServiceType::Dicom => "dicomservices",
            ServiceType::Iot => "iotconnectors",
        }
    }
    fn label(self) -> &'static str {
        match self {
            ServiceType::Fhir => "FHIR service",
            ServiceType::Dicom => "DICOM service",
            ServiceType::Iot => "IoT connector",
        }
    }
}

#[derive(clap::Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Create (or update) a service and wait until it serves.
    Create {
        #[command(flatten)]
        target: Target,
        #[arg(long, short = 'w')]
        workspace: String,
        name: String,
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
        /// A JSON file with the resource's `properties` (for an IoT connector, e.g. its
        /// `deviceMapping`).
        #[arg(long)]
        properties: Option<PathBuf>,
    },
    /// List the services of this kind in a workspace.
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long, short = 'w')]
        workspace: String,
    },
    /// Delete a service and all its data.
    Delete {
        #[command(flatten)]
        target: Target,
        #[arg(long, short = 'w')]
        workspace: String,
        name: String,
    },
}

#[derive(clap::Args)]
pub struct DestinationArgs {
    #[command(subcommand)]
    command: DestinationCommand,
}

#[derive(Subcommand)]
enum DestinationCommand {
    /// Create (or update) the FHIR destination of an IoT connector and wait until it applies.
    Create {
        #[command(flatten)]
        target: Target,
        #[arg(long, short = 'w')]
        workspace: String,
        /// The IoT connector (MedTech service).
        #[arg(long)]
        connector: String,
        name: String,
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
        /// A JSON file with the destination's `properties`: `resourceIdentityResolutionType`,
        /// `fhirServiceResourceId`, `fhirMapping`.
        #[arg(long)]
        properties: PathBuf,
    },
    /// Delete the FHIR destination of an IoT connector.
    Delete {
        #[command(flatten)]
        target: Target,
        #[arg(long, short = 'w')]
        workspace: String,
        #[arg(long)]
        connector: String,
        name: String,
    },
}

fn read_properties(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// PUT, then follow the operation; prints the resource id.
async fn create(
    client: &Client,
    path: &str,
    location: String,
    properties: Option<&Path>,
    label: &str,
) -> anyhow::Result<()> {
    let mut body = json!({ "location": location });
    if let Some(path) = properties {
        body["properties"] = read_properties(path)?;
    }
    let url = client.group_url(path);
    let answer = client.call(Method::PUT, &url, Some(&body)).await?;
    client.follow(&answer, label).await?;
    println!("{}", answer.body["id"].as_str().unwrap_or(path));
    Ok(())
}

/// DELETE, then follow the operation.
async fn delete(client: &Client, path: &str, label: &str) -> anyhow::Result<()> {
    let url = client.group_url(path);
    let answer = client.call(Method::DELETE, &url, None).await?;
    if answer.status == reqwest::StatusCode::NO_CONTENT {
        println!("{label} does not exist");
    } else {
        client.follow(&answer, label).await?;
        println!("{label} deleted");
    }
    Ok(())
}

pub fn run(kind: ServiceType, args: ServiceArgs) -> std::process::ExitCode {
    run_command(kind, args.command)
}

pub fn run_command(kind: ServiceType, command: ServiceCommand) -> std::process::ExitCode {
    super::run(kind.segment(), async move {
        match command {
            ServiceCommand::Create {
                target,
                workspace,
                name,
                location,
                properties,
            } => {
                create(
                    &Client::new(target),
                    &format!("workspaces/{workspace}/{}/{name}", kind.segment()),
                    location,
                    properties.as_deref(),
                    &format!("{} {name}", kind.label()),
                )
                .await
            }
            ServiceCommand::List { target, workspace } => {
                let client = Client::new(target);
                let url = client.group_url(&format!("workspaces/{workspace}/{}", kind.segment()));
                print_list(&client.call(Method::GET, &url, None).await?.body);
                Ok(())
            }
            ServiceCommand::Delete {
                target,
                workspace,
                name,
            } => {
                delete(
                    &Client::new(target),
                    &format!("workspaces/{workspace}/{}/{name}", kind.segment()),
                    &format!("{} {name}", kind.label()),
                )
                .await
            }
        }
    })
}

pub fn run_destination(args: DestinationArgs) -> std::process::ExitCode {
    super::run("fhirdestinations", async move {
        match args.command {
            DestinationCommand::Create {
                target,
                workspace,
                connector,
                name,
                location,
                properties,
            } => {
                create(
                    &Client::new(target),
                    &format!(
                        "workspaces/{workspace}/iotconnectors/{connector}/fhirdestinations/{name}"
                    ),
                    location,
                    Some(&properties),
                    &format!("FHIR destination {name}"),
                )
                .await
            }
            DestinationCommand::Delete {
                target,
                workspace,
                connector,
                name,
            } => {
                delete(
                    &Client::new(target),
                    &format!(
                        "workspaces/{workspace}/iotconnectors/{connector}/fhirdestinations/{name}"
                    ),
                    &format!("FHIR destination {name}"),
                )
                .await
            }
        }
    })
}
